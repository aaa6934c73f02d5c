//! What the Slack end-to-end test (`tests/slack.rs`) and benchmark (`benches/slack.rs`)
//! both set up: the installation's `[people]` and `[slack]`, the two-owner policy, and
//! `flightdeck serve` with the Slack secrets in its environment. Included by `#[path]`.

#![allow(dead_code)] // each includer uses a part

use flightdeck_testkit::{Cli, Served};

pub const TOKEN: &str = "xoxb-test-token-1234";
pub const APP_TOKEN: &str = "xapp-1-A0FAKEAPP1-test-app-token";
/// python slack-sdk's test vector's secret.
pub const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
pub const CHANNEL: &str = "CAPPROVALS";

/// A publish that changes source needs Bob and Dana.
pub const POLICY: &str = "[[rule]]\nid = \"two-owners\"\naction = \"publish\"\nchanges_any = [\"source\"]\ndecision = \"approve\"\napprovals = 2\napprovers = [\"@bob\", \"@dana\"]\n";

/// Carol (the requester), Bob, Dana (known by email only) and Eve; Slack in both modes.
pub fn config(api_url: &str) -> String {
    format!(
        "[people.carol]\nhandle = \"@carol\"\nslack = \"UCAROL\"\n\
         [people.bob]\nhandle = \"@bob\"\nslack = \"UBOB\"\n\
         [people.dana]\nhandle = \"@dana\"\nemails = [\"dana@acme.test\"]\n\
         [people.eve]\nhandle = \"@eve\"\nslack = \"UEVE\"\n\
         [slack]\nbot_token_env = \"FD_TEST_SLACK_TOKEN\"\napp_token_env = \"FD_TEST_SLACK_APP_TOKEN\"\n\
         signing_secret_env = \"FD_TEST_SLACK_SECRET\"\napi_url = \"{api_url}\"\n\
         resolve_by_email = true\nremind_before_seconds = 18\n\
         [slack.channels]\ndefault = \"{CHANNEL}\"\n"
    )
}

/// `flightdeck serve` with the Slack secrets in its environment; stopped when dropped.
pub fn serve(cli: &Cli) -> Served {
    cli.serve(
        &[],
        &[
            ("FD_TEST_SLACK_TOKEN", TOKEN),
            ("FD_TEST_SLACK_SECRET", SECRET),
            ("FD_TEST_SLACK_APP_TOKEN", APP_TOKEN),
        ],
    )
}

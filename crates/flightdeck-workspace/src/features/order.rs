//! The install order: the spec's round-based algorithm
//! (containers.dev/implementors/features/#installation-order) as the reference implements it
//! in `computeDependsOnInstallationOrder` (`containerFeaturesOrder.ts`):
//!
//! 1. `installsAfter` edges whose target is not in the set are dropped (soft).
//! 2. Each round takes every node whose `dependsOn` (hard) and remaining `installsAfter` targets
//!    are all installed in earlier rounds; of those, only the ones with the highest priority
//!    (`overrideFeatureInstallOrder`: the first entry gets N, the last 1, others 0) go.
//! 3. A round is sorted with the reference's `compareTo` (by registry/namespace, then id with
//!    legacy-id aliases, tag, options, manifest digest; local folders by path then options;
//!    tarballs by URL then options; different kinds by the id as written), all string
//!    comparisons with JavaScript's `localeCompare` ([`locale_compare`]).
//! 4. A round with nothing in it is a cycle: an [`FeatureError::Order`] naming it.
//!
//! *Differs on purpose:* the reference fetches each `installsAfter` target's metadata to learn
//! its `legacyIds` (network, and an error when the target cannot be fetched); here a soft edge
//! also matches a member whose own `legacyIds` include the target's id in the same namespace,
//! and nothing is fetched for a target that is not in the set.

use std::cmp::Ordering;

use serde_json::Value;

use super::{FeatureError, FeatureSource, OciVersion};

/// One feature to order. Nodes must be distinct (the caller dedupes equal features, as the
/// reference's graph walk does); edges are indices into the slice / canonical ids.
#[derive(Debug, Clone)]
pub struct OrderNode {
    /// The id as written (in devcontainer.json, or in a `dependsOn`).
    pub written: String,
    /// Where it comes from, as written (the tag is kept: it takes part in the tie-break).
    pub source: FeatureSource,
    /// The manifest digest (OCI) or integrity the feature resolved to.
    pub digest: String,
    /// The options as given (for the tie-break).
    pub options: Value,
    /// The metadata's `id` then its `legacyIds` (the reference's `featureIdAliases`); empty when
    /// unknown.
    pub aliases: Vec<String>,
    /// Hard dependencies: indices of the nodes that must be installed first.
    pub depends_on: Vec<usize>,
    /// Soft dependencies: canonical ids ([`super::reference::canonical_id`]).
    pub installs_after: Vec<String>,
}

impl OrderNode {
    fn canonical(&self) -> String {
        super::reference::canonical_id(&self.source)
    }

    /// Does this node satisfy a soft dependency on `target` (`satisfiesSoftDependency`)?
    fn satisfies(&self, target: &str) -> bool {
        if self.canonical() == target {
            return true;
        }
        match &self.source {
            FeatureSource::Oci(r) => {
                let namespace = r.repository.rsplit_once('/').map_or("", |(ns, _)| ns);
                self.aliases
                    .iter()
                    .any(|alias| format!("{}/{namespace}/{alias}", r.registry) == target)
            }
            _ => false,
        }
    }
}

/// The order to install `nodes` in, as indices. `override_order` is
/// `overrideFeatureInstallOrder` as canonical ids (entries matching nothing are ignored, as in
/// the reference).
pub fn install_order(
    nodes: &[OrderNode],
    override_order: &[String],
) -> Result<Vec<usize>, FeatureError> {
    for (i, node) in nodes.iter().enumerate() {
        if let Some(bad) = node
            .depends_on
            .iter()
            .find(|&&d| d >= nodes.len() || d == i)
        {
            if *bad == i {
                return Err(FeatureError::Order(format!(
                    "`{}` depends on itself",
                    node.written
                )));
            }
            return Err(FeatureError::Order(format!(
                "`{}` depends on node {bad}, which does not exist",
                node.written
            )));
        }
    }
    // `applyOverrideFeatureInstallOrder`: the first entry has the highest priority; a node
    // matched by several keeps the highest.
    let len = override_order.len();
    let priority: Vec<usize> = nodes
        .iter()
        .map(|node| {
            override_order
                .iter()
                .enumerate()
                .filter(|(_, id)| node.canonical() == **id)
                .map(|(i, _)| len - i)
                .max()
                .unwrap_or(0)
        })
        .collect();
    // Soft edges to features not in the set are not required.
    let soft: Vec<Vec<&String>> = nodes
        .iter()
        .map(|node| {
            node.installs_after
                .iter()
                .filter(|target| nodes.iter().any(|n| n.satisfies(target)))
                .collect()
        })
        .collect();

    let mut installed: Vec<usize> = Vec::new();
    let mut remaining: Vec<usize> = (0..nodes.len()).collect();
    while !remaining.is_empty() {
        let ready = |i: usize| {
            nodes[i].depends_on.iter().all(|d| installed.contains(d))
                && soft[i]
                    .iter()
                    .all(|target| installed.iter().any(|&j| nodes[j].satisfies(target)))
        };
        let mut round: Vec<usize> = remaining.iter().copied().filter(|&i| ready(i)).collect();
        if round.is_empty() {
            return Err(FeatureError::Order(describe_cycle(
                nodes, &soft, &remaining, &installed,
            )));
        }
        let top = round.iter().map(|&i| priority[i]).max().unwrap_or(0);
        round.retain(|&i| priority[i] == top);
        remaining.retain(|i| !round.contains(i));
        round.sort_by(|&a, &b| compare(&nodes[a], &nodes[b]));
        installed.extend(round);
    }
    Ok(installed)
}

/// Names a cycle among the nodes left (following the edges not yet satisfied).
fn describe_cycle(
    nodes: &[OrderNode],
    soft: &[Vec<&String>],
    remaining: &[usize],
    installed: &[usize],
) -> String {
    let blockers = |i: usize| -> Vec<usize> {
        let mut out: Vec<usize> = nodes[i]
            .depends_on
            .iter()
            .copied()
            .filter(|d| !installed.contains(d))
            .collect();
        for target in &soft[i] {
            if !installed.iter().any(|&j| nodes[j].satisfies(target)) {
                out.extend(
                    remaining
                        .iter()
                        .copied()
                        .filter(|&j| nodes[j].satisfies(target)),
                );
            }
        }
        out
    };
    // Walk from the first node left: every node left is blocked by another node left, so the
    // walk must come back to a node it has seen.
    let mut path: Vec<usize> = Vec::new();
    let mut current = remaining.first().copied();
    while let Some(i) = current {
        if let Some(start) = path.iter().position(|&p| p == i) {
            let mut names: Vec<String> = path[start..]
                .iter()
                .map(|&p| format!("`{}`", nodes[p].written))
                .collect();
            names.push(format!("`{}`", nodes[i].written));
            return format!(
                "the features' dependsOn/installsAfter form a cycle: {}; hint: remove one of \
                 these dependencies, or order them with overrideFeatureInstallOrder if the cycle \
                 is only installsAfter",
                names.join(" → ")
            );
        }
        path.push(i);
        current = blockers(i).into_iter().find(|b| remaining.contains(b));
    }
    let left: Vec<String> = remaining
        .iter()
        .map(|&i| format!("`{}`", nodes[i].written))
        .collect();
    format!(
        "cannot order the features: {} wait on each other",
        left.join(", ")
    )
}

/// The reference's `compareTo` (callers only compare nodes of one round).
pub fn compare(a: &OrderNode, b: &OrderNode) -> Ordering {
    match (&a.source, &b.source) {
        (FeatureSource::Oci(ra), FeatureSource::Oci(rb)) => {
            if a.digest == b.digest && options_cmp(&a.options, &b.options) == Ordering::Equal {
                return Ordering::Equal;
            }
            let (ns_a, id_a) = split_id(&ra.registry, &ra.repository);
            let (ns_b, id_b) = split_id(&rb.registry, &rb.repository);
            if ns_a != ns_b {
                return locale_compare(&ns_a, &ns_b);
            }
            let aliases_a: Vec<&str> = if a.aliases.is_empty() {
                vec![id_a]
            } else {
                a.aliases.iter().map(String::as_str).collect()
            };
            let aliases_b: Vec<&str> = if b.aliases.is_empty() {
                vec![id_b]
            } else {
                b.aliases.iter().map(String::as_str).collect()
            };
            let common = aliases_a.iter().any(|x| aliases_b.contains(x));
            if !common {
                let by_id = locale_compare(id_a, id_b);
                if by_id != Ordering::Equal {
                    return by_id;
                }
            }
            if let (OciVersion::Tag(ta), OciVersion::Tag(tb)) = (&ra.version, &rb.version) {
                if ta != tb {
                    return locale_compare(ta, tb);
                }
            }
            let by_options = options_cmp(&a.options, &b.options);
            if by_options != Ordering::Equal {
                return by_options;
            }
            locale_compare(&a.digest, &b.digest)
        }
        (FeatureSource::Local(pa), FeatureSource::Local(pb)) => {
            locale_compare(&pa.display().to_string(), &pb.display().to_string())
                .then_with(|| options_cmp(&a.options, &b.options))
        }
        (FeatureSource::Tarball(ua), FeatureSource::Tarball(ub)) => {
            locale_compare(ua, ub).then_with(|| options_cmp(&a.options, &b.options))
        }
        _ => locale_compare(&a.written, &b.written),
    }
}

/// `registry/namespace` and the id (`featureRef.id`).
fn split_id<'a>(registry: &str, repository: &'a str) -> (String, &'a str) {
    match repository.rsplit_once('/') {
        Some((namespace, id)) => (format!("{registry}/{namespace}"), id),
        None => (format!("{registry}/"), repository),
    }
}

fn js_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::Null | Value::Object(_) | Value::Array(_) => "object",
    }
}

/// The reference's `optionsCompareTo`, faithfully (values of different types inside objects
/// compare equal, as there).
pub fn options_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) => locale_compare(x, y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Object(x), Value::Object(y)) => {
            if x.len() != y.len() {
                return x.len().cmp(&y.len());
            }
            let mut kx: Vec<&String> = x.keys().collect();
            let mut ky: Vec<&String> = y.keys().collect();
            // `Array.prototype.sort` without a comparator: by UTF-16 code units.
            kx.sort_by(|p, q| p.encode_utf16().cmp(q.encode_utf16()));
            ky.sort_by(|p, q| p.encode_utf16().cmp(q.encode_utf16()));
            for (ka, kb) in kx.into_iter().zip(ky) {
                if ka != kb {
                    return locale_compare(ka, kb);
                }
                let ord = match (&x[ka.as_str()], &y[kb.as_str()]) {
                    (Value::String(p), Value::String(q)) => locale_compare(p, q),
                    (Value::Bool(p), Value::Bool(q)) => p.cmp(q),
                    _ => Ordering::Equal,
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            Ordering::Equal
        }
        (Value::Null | Value::Array(_), Value::Null | Value::Object(_) | Value::Array(_))
        | (Value::Object(_), Value::Null | Value::Array(_)) => Ordering::Equal,
        _ => locale_compare(js_type(a), js_type(b)),
    }
}

/// ASCII in the order of Node's `localeCompare` (ICU root collation, punctuation not
/// ignored), letters case-blind at this level.
const ASCII_ORDER: &str =
    "\t\n\u{b}\u{c}\r _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789abcdefghijklmnopqrstuvwxyz";

fn primary(c: char) -> Option<u32> {
    let lower = c.to_ascii_lowercase();
    if let Some(pos) = ASCII_ORDER.find(lower) {
        return u32::try_from(pos).ok();
    }
    if c.is_ascii_control() {
        // Completely ignorable in ICU.
        return None;
    }
    // Beyond ASCII: after it, by code point (an approximation; ids and URLs are ASCII).
    Some(1000 + u32::from(c))
}

/// JavaScript's `a.localeCompare(b)` in Node's default (ICU, `en-US`) collation, for the
/// strings features are compared by: ASCII exactly (punctuation < digits < letters, letters
/// case-blind first, then lower case before upper), anything else by code point after ASCII.
pub fn locale_compare(a: &str, b: &str) -> Ordering {
    let pa = a.chars().filter_map(primary);
    let pb = b.chars().filter_map(primary);
    let by_primary = pa.cmp(pb);
    if by_primary != Ordering::Equal {
        return by_primary;
    }
    let case = |s: &str| -> Vec<bool> {
        s.chars()
            .filter(|c| primary(*c).is_some())
            .map(|c| c.is_ascii_uppercase())
            .collect()
    };
    case(a).cmp(&case(b)).then_with(|| a.cmp(b))
}

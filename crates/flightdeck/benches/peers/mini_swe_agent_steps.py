"""mini-swe-agent running N `true` steps with a zero-latency scripted model.

The peer side of `cargo bench -p flightdeck --bench run_steps`: same shape of mission (N
commands that do nothing, then the end), same measure (median of rounds; per step =
(T(N) - T(1)) / (N - 1), so start-up cancels out). mini-swe-agent's own DeterministicModel
and LocalEnvironment (no sandbox, no durable record) run the commands; with --trajectory the
agent saves its trajectory after every step, as its CLI does.

    python3 -m venv venv && venv/bin/pip install mini-swe-agent
    venv/bin/python crates/flightdeck/benches/peers/mini_swe_agent_steps.py [--trajectory]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from minisweagent.agents.default import DefaultAgent
from minisweagent.environments.local import LocalEnvironment
from minisweagent.models.test_models import DeterministicModel, make_output


def mission(steps: int, workdir: str, trajectory: Path | None) -> float:
    outputs = [make_output("run it", [{"command": "true"}], cost=0.0) for _ in range(steps)]
    outputs.append(
        make_output("done", [{"command": "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"}], cost=0.0)
    )
    started = time.perf_counter()
    agent = DefaultAgent(
        DeterministicModel(outputs=outputs, cost_per_call=0.0),
        LocalEnvironment(cwd=workdir),
        system_template="You run commands.",
        instance_template="{{task}}",
        step_limit=0,
        cost_limit=0.0,
        output_path=trajectory,
    )
    result = agent.run("run true")
    elapsed = time.perf_counter() - started
    if result.get("exit_status") != "Submitted":
        sys.exit(f"the mission did not finish: {result}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trajectory", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        trajectory = Path(workdir) / "trajectory.json" if args.trajectory else None
        one = statistics.median(mission(1, workdir, trajectory) for _ in range(args.rounds))
        many = statistics.median(
            mission(args.steps, workdir, trajectory) for _ in range(args.rounds)
        )
    per_step = (many - one) / (args.steps - 1)
    print(
        f"mini-swe-agent{' (trajectory saved each step)' if args.trajectory else ''}: "
        f"1-step {one * 1000:.1f} ms, {args.steps}-step {many * 1000:.1f} ms, "
        f"per step {per_step * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()

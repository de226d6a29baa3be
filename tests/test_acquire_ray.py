"""`--executor ray`: the same stages and the same manifest semantics on a local Ray instance."""

from __future__ import annotations

from pathlib import Path

import pytest

from deescalwild.acquire.manifest import Manifest, NewVideo
from deescalwild.acquire.runner import run_stages
from deescalwild.acquire.tasks import STAGES, Settings

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    tests = str(Path(__file__).parent)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": tests}})
    yield
    ray.shutdown()


def test_a_small_batch_on_local_ray_matches_the_process_pool(tmp_path, local_ray):
    results = {}
    for kind in ("ray", "local"):
        root = tmp_path / kind
        m = Manifest(root / "m.db")
        for i, title in enumerate(["ok", "bad", "ok too", "long"]):
            m.add_video(NewVideo(f"generic_v{i}", f"https://example.org/{i}", None, "t",
                                 {"title": title}))
        s = Settings(workdir=str(root / "work"), out_dir=str(root / "out"), diarizer="local")
        fns = {st: "acquire_fake_stages:write_stage" for st in STAGES}
        fns["audio"] = "acquire_fake_stages:flaky_stage"
        summary = run_stages(m, s, executor=kind, workers=2, functions=fns, provenance={})
        results[kind] = ({r.video_id + "/" + r.stage: (r.status, r.attempts, r.last_error)
                          for r in m.stage_rows()}, summary.outcomes)
        if kind == "ray":
            # a second run on Ray redoes nothing
            again = run_stages(m, s, executor=kind, workers=2, functions=fns, provenance={})
            assert again.outcomes == {}
            out = m.stages_of("generic_v0")["export"].outputs["txt"]
            assert out["path"] == "work/export/generic_v0.txt" and len(out["sha256"]) == 64
        m.close()
    assert results["ray"] == results["local"]
    rows, outcomes = results["ray"]
    assert outcomes["export"] == {"done": 2, "failed": 0, "skipped": 1}
    assert rows["generic_v1/audio"][0] == "failed" and rows["generic_v1/export"][0] == "pending"

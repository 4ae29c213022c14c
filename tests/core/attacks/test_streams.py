"""An attack's rows as concurrent shards (attacks/streams.py): the split, the merged progress,
Stop and errors reaching every shard, and APGD giving the same result in shards as whole."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from advgui.core.attacks import make_attack, streams
from advgui.core.progress import Cancelled, CancelToken


def test_the_split_keeps_every_row_once_in_cache_sized_shards():
    assert [len(p) for p in streams.split(1000, 2)] == [250] * 4
    assert [len(p) for p in streams.split(300, 2)] == [150, 150]
    assert len(streams.split(255, 2)) == 1 and len(streams.split(1000, 1)) == 1
    assert len(streams.split(5000, 2)) == 20 and len(streams.split(1000, 6)) == 6
    for n, s in ((1000, 2), (257, 2), (4099, 3)):
        parts = streams.split(n, s)
        assert np.array_equal(np.concatenate(parts), np.arange(n))
        assert min(len(p) for p in parts) >= streams.MIN_SHARD_ROWS


def _stepper(steps: int, seen: list, fail_at: int | None = None):
    """A work function that counts ``steps`` steps, reporting like run_steps does."""
    from advgui.core.attacks.engine import run_steps

    def work(rows, progress, cancel):
        seen.append(threading.get_ident())

        def step(state, k):
            time.sleep(0.002 * k)
            if fail_at is not None and rows[0] == fail_at:
                raise ValueError("shard failed")
            return state + k

        _, done = run_steps(step, 0, steps, progress=progress, cancel=cancel, message="m",
                            info=lambda s: {"robust": len(rows) - s // 10, "label": "x"},
                            chunk_seconds=0.01)  # fmt: skip
        return rows * 2, done

    return work


def test_progress_is_merged_over_the_shards_and_every_row_comes_back():
    updates, seen = [], []
    got = streams.run(_stepper(40, seen), 600, progress=updates.append, cancel=None, offset=100,
                      steps=40, grand=500, start_info=lambda rows: {"robust": len(rows)},
                      streams=2)  # fmt: skip
    assert [len(rows) for rows, _ in got] == [200, 200, 200]
    assert all(np.array_equal(out, rows * 2) and done == 40 for rows, (out, done) in got)
    assert len(set(seen)) == 2  # two threads
    done = [u.done for u in updates]
    assert done == sorted(done) and done[0] >= 100 and done[-1] == 140
    assert all(u.total == 500 for u in updates)
    # The count is summed over the shards; what is not a count is left out.
    assert updates[-1].info == {"robust": 600 - 3 * 4}
    assert max(u.info["robust"] for u in updates) <= 600


def test_stop_reaches_every_shard_and_an_error_stops_the_others():
    token = CancelToken()

    def stop_soon(update):
        if update.done >= 5:
            token.cancel()

    seen: list = []
    t0 = time.perf_counter()
    with pytest.raises(Cancelled):
        streams.run(_stepper(2000, seen), 600, progress=stop_soon, cancel=token, offset=0,
                    steps=2000, grand=2000, streams=2)  # fmt: skip
    assert time.perf_counter() - t0 < 2.0  # 2000 steps of 2 ms would take 4 s per shard
    before = threading.active_count()
    with pytest.raises(ValueError, match="shard failed"):
        streams.run(_stepper(2000, [], fail_at=200), 600, progress=None, cancel=None,
                    offset=0, steps=2000, grand=2000, streams=2)  # fmt: skip
    assert threading.active_count() == before  # every shard's thread joined


def test_apgd_in_shards_is_apgd_on_the_whole_batch(trained_cnn, mnist, monkeypatch):
    """The same random starts and per-image state: shards change nothing but the speed."""
    from advgui.core import tuning

    x, y = mnist.x_test[:300], mnist.y_test[:300]
    attack = make_attack("apgd-ce", eps=0.1, steps=20, seed=3)
    results, updates = {}, []
    for n_streams in (1, 2):
        with tuning.overridden(attack_streams=n_streams):
            assert len(streams.split(len(x))) == n_streams
            results[n_streams] = attack(trained_cnn, x, labels=y, progress=updates.append)
    one, two = results[1], results[2]
    assert 0.2 < one.success.mean() < 0.9  # a budget where rows could be mixed up
    # Row by row: each adversarial image is of its own original, broken where marked.
    assert np.abs(two.x_adv - x).max() <= 0.1 + 1e-5
    assert np.array_equal(two.pred_after, trained_cnn.predict(two.x_adv))
    assert (one.success == two.success).mean() >= 0.98
    # Most rows end on the same image (float round-off by batch size sends a few elsewhere).
    same = np.abs(one.x_adv - two.x_adv).max(axis=(1, 2, 3)) < 1e-4
    assert same.mean() >= 0.8, same.mean()
    assert updates[-1].done == updates[-1].total

"""Soak (slow): 2,000 signed events at concurrency 16, the target failing 20% with 503."""
import pytest

from benchmarks.soak import soak


@pytest.mark.slow
def test_2000_events_with_a_flaky_target_are_each_delivered_exactly_once():
    result = soak(events=2000, concurrency=16, fail_ratio=0.2)
    print(result)
    assert result["target_503s"] > 0, "the target must really have failed some requests"
    assert result["calendly_5xx"] == 0
    assert result["lost"] == 0 and result["delivered_unique"] == 2000
    assert result["delivered_twice_or_more"] == 0

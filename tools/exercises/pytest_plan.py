"""A pytest plugin for tests/steps that runs exactly the tests of some
exercises' checks, and writes what happened to a JSON file.

    LADDER_EXERCISE_PLAN=plan.json python -m pytest tests/steps -p pytest_plan

plan.json: {"report": "out.json", "first_failure_ends": false,
            "exercises": [{"name": "06-drain", "step": "06", "ids": [],
                           "select": "<a -k expression>"}, ...]}

A test is kept when its `step` parameter is the exercise's step (one of its
`ids`, when it names some) and the exercise's expression matches it the way
`-k` would. For one exercise this is `LADDER_STEPS=NN pytest -k "<select>"`;
the plugin makes it possible to run many exercises, on many binaries, in one
session. `first_failure_ends`: after an exercise's first failure its other
tests are skipped (the suite only needs to know that a stub fails).
"""

from __future__ import annotations

import json
import os

import pytest
from _pytest.mark import KeywordMatcher
from _pytest.mark.expression import Expression

_plan: dict = {}
_results: dict[str, dict] = {}
_owner: dict[str, list[str]] = {}  # nodeid -> exercises
_failed: set[str] = set()


def _step_of(item):
    callspec = getattr(item, "callspec", None)
    step = callspec.params.get("step") if callspec else None
    return step if hasattr(step, "number") else None  # not a Step: an empty parameter set


def pytest_configure(config):
    path = os.environ.get("LADDER_EXERCISE_PLAN")
    if path:
        with open(path) as f:
            _plan.update(json.load(f))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    if not _plan:
        return
    compiled = [(e, Expression.compile(e["select"])) for e in _plan["exercises"]]
    kept, dropped = [], []
    for item in items:
        step = _step_of(item)
        owners = []
        if step is not None:
            matcher = KeywordMatcher.from_item(item)
            for e, expr in compiled:
                if step.number != e["step"] or (e.get("ids") and step.id not in e["ids"]):
                    continue
                if expr.evaluate(matcher):
                    owners.append(e["name"])
        if owners:
            kept.append(item)
            _owner[item.nodeid] = owners
            _results[item.nodeid] = {
                "exercises": owners, "test": item.originalname, "id": step.id,
                "params": item.nodeid.partition("[")[2].rstrip("]"),
                "outcome": "not run", "message": "",
                "xfail": item.get_closest_marker("xfail") is not None,
                "skip": item.get_closest_marker("skip") is not None}
        else:
            dropped.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept


def pytest_runtest_setup(item):
    if _plan.get("first_failure_ends") and all(o in _failed for o in _owner.get(item.nodeid, [])):
        pytest.skip("this exercise has failed already")


def pytest_runtest_logreport(report):
    r = _results.get(report.nodeid)
    if r is None:
        return
    if report.failed:
        r["outcome"] = "failed"
        r["message"] = report.longreprtext[-6000:]
        r["when"] = report.when
        _failed.update(r["exercises"])
    elif hasattr(report, "wasxfail"):
        r["outcome"] = "xfailed" if report.skipped else "xpassed"
    elif report.skipped and r["outcome"] == "not run":
        r["outcome"] = "skipped"
        r["message"] = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
    elif report.when == "call" and report.passed and r["outcome"] == "not run":
        r["outcome"] = "passed"


def pytest_sessionfinish(session, exitstatus):
    if _plan.get("report"):
        with open(_plan["report"], "w") as f:
            json.dump(_results, f, indent=1)

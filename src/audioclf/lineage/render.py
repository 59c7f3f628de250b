"""The chain and the verification as text for people."""

from __future__ import annotations

import datetime as dt

from audioclf.lineage.records import Check
from audioclf.lineage.verify import first_failure


def _when(ms: int | None) -> str:
    if not ms:
        return "-"

    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def format_text(report: dict, checks: list[Check] | None = None) -> str:
    out: list[str] = []
    add = out.append
    model, run, code = report["model"], report["run"], report["code"]
    add(f"target      {report['target']}  ({model['kind']})")
    if model["kind"] == "registered model":
        aliases = f", aliases {', '.join(model['aliases'])}" if model["aliases"] else ""
        add(f"model       {model['name']} version {model['version']}{aliases} <- {model['source']}")
    if model.get("logged_models"):
        add(f"model       logged model(s) {', '.join(model['logged_models'])}")
    if model.get("sha256"):
        add(f"weights     sha256 {model['sha256']}")
    if model.get("also_matching_runs"):
        add(f"            same weights also in runs {', '.join(model['also_matching_runs'])}")
    add(
        f"run         {run['id']} '{run['name']}' in experiment '{run['experiment_name']}' "
        f"({run['status']}, {_when(run['start_time'])} - {_when(run['end_time'])})"
    )
    add(f"store       {run['tracking_uri']}")
    dirty = code["git_dirty"]
    dirty_text = f", dirty: {code['dirty_files']}" if dirty == "true" else ", clean"
    add(f"git commit  {code['git_commit']}{dirty_text if dirty else ''}")
    exp = report["dvc_experiment"]
    if exp:
        commit = exp["commit"] or "(no ref in this repository)"
        points = {True: ", its run file names this run", False: ", its run file names another run"}
        add(
            f"dvc exp     {exp['name']} (baseline {str(exp['baseline_rev'])[:7]}) commit {commit}"
            + points.get(exp["run_file_names_this_run"], "")
        )
    else:
        add("dvc exp     - (not run by `dvc exp run`)")
    add(f"sweep       {report['sweep'] or '-'}")
    if report.get("environment"):
        add("environment")
        for key, value in report["environment"].items():
            add(f"  {key} = {value}")
    add("metrics")
    for key, value in run["metrics"].items():
        add(f"  {key} = {value:.6g}")
    add("params")
    for key, value in run["params"].items():
        add(f"  {key} = {value}")
    lock = report["dvc_lock"]
    add(f"dvc.lock    ({lock['source']})")
    for stage, entry in lock["stages"].items():
        add(f"  {stage}")
        for kind in ("deps", "outs"):
            for item in entry.get(kind) or []:
                size = f"  {item['nfiles']} files" if item.get("nfiles") else ""
                add(f"    {kind[:-1]:<4} {item.get('md5', '-'):<38} {item['path']}{size}")
    data = report["data"]
    if data:
        rev = data.get("revision") or "-"
        add(
            f"data        {data['source']} {data['path']} (config {data.get('config_name')}, "
            f"split {data.get('split_name')}, revision {rev})"
        )
        add(f"  digest    {data['digest']}")
        add("  rows      " + ", ".join(f"{s}={n}" for s, n in data["num_rows"].items()))
        for split, counts in data["class_counts"].items():
            add(f"  {split:<9} " + ", ".join(f"{c}={n}" for c, n in counts.items()))
        skipped = data.get("skipped") or []
        add(f"  skipped   {len(skipped)}")
        for item in skipped:
            add(f"    {item['path']}: {item['reason']}")
        add(f"  items     {len(data['items'])} (split, label, sha256, path)")
        for item in data["items"]:
            add(f"    {item['split']:<5} {item['label']:<12} {item['sha256']}  {item['path']}")
    for warning in report["warnings"]:
        add(f"warning     {warning}")
    if checks is not None:
        add("verify")
        for c in checks:
            add(f"  {c.status:<10} {c.stage:<9} {c.kind:<11} {c.path}  {c.detail}".rstrip())
            for name in c.files[:20]:
                add(f"               changed: {name}")
        failure = first_failure(checks)
        add(f"verify: FAILED at {failure}" if failure else "verify: OK")
    return "\n".join(out)

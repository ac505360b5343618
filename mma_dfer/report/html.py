"""The report as one self-contained HTML page: inline CSS and SVG figures, no script, nothing
fetched. Every number cell carries ``data-key`` (run or group, dataset, resolution, metric) so
that a test can read the page back and compare it with the JSON files it came from."""
from __future__ import annotations

import datetime
import html
from typing import Optional

from mma_dfer import figures
from mma_dfer.datasets import NAMES
from mma_dfer.experiments.collect import STATUSES, Group, Report, Run, paper_table1, read_curves
from mma_dfer.experiments.formats import title as dataset_title
from mma_dfer.experiments.verdicts import refused

CSS = """
body { font: 14px/1.45 "DejaVu Sans", Arial, sans-serif; margin: 0 auto; max-width: 1250px; padding: 0 18px 40px;
       color: #222; }
h1 { font-size: 22px; margin: 18px 0 4px; } h2 { font-size: 18px; margin: 30px 0 6px; border-bottom: 1px solid #ccc; }
h3 { font-size: 15px; margin: 18px 0 6px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d4d4d4; padding: 3px 8px; } th { background: #f2f4f7; font-weight: 600; }
td.num { text-align: right; white-space: nowrap; } td.paper { color: #8a1f2d; } td.label { white-space: nowrap; }
td.pos { color: #1a7f37; } td.neg { color: #b42318; } td.missing, td.failed { color: #b42318; font-style: italic; }
.small { color: #666; font-size: 12px; } .note { color: #444; max-width: 950px; }
nav a { margin-right: 14px; } figure { margin: 8px 0 16px; } svg { max-width: 100%; height: auto; }
details { border: 1px solid #ddd; border-radius: 4px; padding: 4px 10px; margin: 6px 0; }
summary { cursor: pointer; font-weight: 600; } .status-failed, .status-missing { color: #b42318; }
td.mixed { color: #b42318; background: #fff4e5; white-space: pre-wrap; font-size: 12px; }
div.ci { color: #555; font-size: 11px; } div.inside { color: #1a7f37; } div.above, div.below { color: #b42318; }
td.sig { font-weight: 700; }
.flex { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
"""


def e(text) -> str:
    return html.escape(str(text))


def fmt(v, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def num(key: str, text: str, cls: str = "num", below: str = "") -> str:
    """A number cell; ``below``: more lines under the number (each with its own data-key), the
    number then in a span of its own, so that every data-key's text is exactly its number."""
    if below:
        return f'<td class="{cls}"><span data-key="{e(key)}">{e(text)}</span>{below}</td>'
    return f'<td class="{cls}" data-key="{e(key)}">{e(text)}</td>'


def mean_cell(key: str, row: Optional[dict], metric: str, expected: int) -> str:
    """Mean ± sample std over the folds present; "(n/N folds)" when some are missing; below it
    the interval of the mean (``<key>_ci``) and, with several seeds, their spread (``<key>_seeds``)."""
    if not row or row.get(f"{metric}_mean") is None:
        return num(key, "—", "num missing")
    text = fmt(row[f"{metric}_mean"]) + (f" ± {fmt(row[f'{metric}_std'])}" if row.get(f"{metric}_std") is not None
                                         else "")
    n = sum(1 for f in row["folds"].values() if f.get(metric) is not None)
    if n < expected:
        text += f" ({n}/{expected} folds)"
    extra = ci_div(f"{key}_ci", row.get(f"{metric}_ci"))
    if row.get(f"{metric}_seed_std") is not None:
        extra += (f'<div class=ci data-key="{e(key)}_seeds">seeds ± {fmt(row[f"{metric}_seed_std"])} '
                  f'({len(row["seeds"])} seeds)</div>')
    return num(key, text, below=extra)


def ci_text(ci) -> str:
    return "—" if ci is None else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def ci_div(key: str, ci) -> str:
    """An interval under a number, in its own data-key (the number's cell text stays as it was)."""
    return "" if ci is None else f'<div class=ci data-key="{e(key)}">95% CI {e(ci_text(ci))}</div>'


def paper_cell(key: str, paper: Optional[float], verdict: Optional[str]) -> str:
    """The paper's number and, below it, where it lies against our interval (``<key>_verdict``)."""
    below = f'<div class="ci {e(verdict)}" data-key="{e(key)}_verdict">{e(verdict)}</div>' if verdict else ""
    return num(key, fmt(paper), "num paper", below)


def difference_cell(key: str, diff: Optional[dict]) -> str:
    """A variant minus the reference with its paired interval; bold and starred when the
    interval excludes zero."""
    if not diff:
        return num(key, "—")
    text = f"{diff['delta']:+.2f} {ci_text(diff['ci'])}" + (" *" if diff["significant"] else "")
    return num(key, text, "num sig" if diff["significant"] else "num")


def delta_cell(key: str, ours: Optional[float], paper: Optional[float]) -> str:
    if ours is None or paper is None:
        return num(key, "—")
    d = ours - paper
    return num(key, f"{d:+.2f}", "num " + ("pos" if d >= 0 else "neg"))


def mixed_row(row: Optional[dict], columns: int) -> str:
    """A warning row for an aggregate row the aggregator refuses to average (folds made by
    different configs, naming the folds and the fields; a fold with two results, naming the
    files); nothing otherwise."""
    if not row or not refused(row):
        return ""
    return f'<tr class=mixed><td colspan={columns} class=mixed>not averaged: {e(refused(row))}</td></tr>'


def figure(fig, caption: str) -> str:
    return f"<figure>{figures.svg(fig)}<figcaption class=small>{e(caption)}</figcaption></figure>"


# -- Table 1 ------------------------------------------------------------------------------------

def table1_section(group: Group, expected_folds: Optional[int], title: str) -> str:
    """``expected_folds``: a sweep's fold count (None: each row's protocol)."""
    table = group.table
    datasets = [d for d in NAMES if d in table] + sorted(set(table) - set(NAMES))  # the registry's order
    resolutions = sorted({res for d in datasets for res in table[d]} | {r.resolution for r in group.runs}, key=int)
    head = "".join(f'<th colspan=6>{e(dataset_title(d))}</th>' for d in datasets)
    sub = "".join("<th>UAR ours</th><th>paper</th><th>Δ</th><th>WAR ours</th><th>paper</th><th>Δ</th>"
                  for _ in datasets)
    body = []
    for res in resolutions:
        for star, suffix in (("", ""), ("*", "_2clip")):
            cells = []
            for d in datasets:
                row = table.get(d, {}).get(res)
                paper = paper_table1(d, res)
                for m in ("uar", "war"):
                    metric = m + suffix
                    key = f"{group.name}/{d}/res{res}/{metric}"
                    ours = row.get(f"{metric}_mean") if row else None
                    p = paper[metric] if paper else None
                    n = expected_folds or len(row["expected"] if row else ())
                    verdict = (row.get("verdict") or {}).get(metric) if row else None
                    cells += [mean_cell(f"{key}_mean", row, metric, n),
                              paper_cell(f"{key}_paper", p, verdict), delta_cell(f"{key}_delta", ours, p)]
            body.append(f"<tr><td class=label>MMA (ours)_{e(res)}{star}</td>{''.join(cells)}</tr>")
        body += [mixed_row(table.get(d, {}).get(res), 1 + 6 * len(datasets)) for d in datasets]
    out = [f"<h3>{e(title)}</h3>",
           f"<table><tr><th rowspan=2>Method</th>{head}</tr><tr>{sub}</tr>{''.join(body)}</table>",
           "<p class=small>ours: mean ± sample std (n−1) over folds, under it the 95% interval of that mean "
           "(stratified bootstrap over each fold's test clips) and, with several training seeds, the spread of "
           "the seeds' means; * = 2-clip average; paper: Table 1, under it whether it lies inside, above or below "
           "our interval; Δ = ours − paper.</p>", folds_table(group)]
    for d in datasets:
        groups = []
        for res in resolutions:
            row = table.get(d, {}).get(res)
            for star, suffix in (("", ""), ("*", "_2clip")):
                folds = row["folds"].values() if row else []
                paper = paper_table1(d, res)
                groups.append({"label": f"{res}{star}", "uar": [f.get("uar" + suffix) for f in folds],
                               "war": [f.get("war" + suffix) for f in folds], "refused": bool(row and refused(row)),
                               "ci": {m: row.get(f"{m}{suffix}_ci") for m in ("uar", "war")} if row else None,
                               "paper": {m: paper[m + suffix] for m in ("uar", "war")} if paper else None})
        out.append(figure(figures.folds_figure(groups, f"{dataset_title(d)}: per-fold UAR / WAR by resolution (* = 2-clip)"),
                          f"{dataset_title(d)} per fold, {group.name}"))
    return "\n".join(out)


def folds_table(group: Group) -> str:
    """Per fold (and seed, where a row has several): UAR / WAR (1-clip and 2-clip) or the run's status."""
    folds = sorted({(r.fold, r.seed or 0) for r in group.runs})
    head = "".join(f"<th>fold {f}" + (f" · seed {s}" if s else "") + "</th>" for f, s in folds)
    rows = []
    cells_by = {(r.dataset, r.resolution, (r.fold, r.seed or 0)): r for r in group.runs}
    for d, res in sorted({(r.dataset, r.resolution) for r in group.runs}, key=lambda c: (c[0], int(c[1]))):
        for label, suffix in (("", ""), ("*", "_2clip")):
            cells = []
            for f in folds:
                r = cells_by.get((d, res, f))
                if r is None:
                    cells.append("<td></td>")
                elif r.status != "done":
                    cells.append(f'<td class="{r.status}">{e(r.status)}</td>')
                else:
                    u, w = r.result.get("uar" + suffix), r.result.get("war" + suffix)
                    cells.append(num(f"{r.key}/uar{suffix}|war{suffix}", f"{fmt(u)} / {fmt(w)}"))
            rows.append(f"<tr><td class=label>{e(dataset_title(d))} {e(res)}{label}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>UAR / WAR per fold</th>{head}</tr>{''.join(rows)}</table>"


# -- ablations ----------------------------------------------------------------------------------

def ablation_section(sweep_result) -> str:
    sweep = sweep_result.sweep
    reference = sweep_result.reference
    expected = len(sweep.folds)
    combos = sorted({(r.dataset, r.resolution) for g in sweep_result.groups for r in g.runs},
                    key=lambda c: (c[0], int(c[1])))
    many = len(combos) > 1
    has_params = any(v.paper and "params" in v.paper for v in sweep.variants)
    cols = "".join(f"<th>{e(c)}</th>" for c in sweep.columns) or "<th>variant</th>"
    head = (cols + ("<th>dataset</th><th>res</th>" if many else "") + "<th>paper UAR</th><th>paper WAR</th>"
            + ("<th>paper Params (M)</th>" if has_params else "")
            + "<th>UAR ours</th><th>WAR ours</th><th>Δ UAR</th><th>Δ WAR</th><th>trainable (M), ours</th><th>runs</th>"
            + f"<th>UAR − {e(reference)}</th><th>WAR − {e(reference)}</th>")
    body, fig_rows = [], []
    for g in sweep_result.groups:
        v = g.variant
        labels = v.row if v and v.row else [g.name.split("/", 1)[1]] + [""] * (max(len(sweep.columns), 1) - 1)
        if v is None:
            labels[0] += " (not in the sweep file)"
        for d, res in combos:
            cells, row = ablation_cells(g, d, res, labels, many, has_params, expected, reference)
            done = [r for r in g.runs if (r.dataset, r.resolution) == (d, res) and r.status == "done"]
            body.append(f"<tr>{cells}</tr>" + mixed_row(row, len(labels) + 2 * many + 10 + has_params))
            fig_rows.append({"label": " ".join(x for x in labels if x) + (f" ({d} {res})" if many else ""),
                             "uar": [r.result["uar"] for r in done], "war": [r.result["war"] for r in done],
                             "ci": {m: row.get(f"{m}_ci") for m in ("uar", "war")} if row else None,
                             "paper": v.paper if v else None, "refused": bool(row and refused(row))})
    grid = f"{', '.join(dataset_title(d) for d in sweep.datasets)}; {', '.join(map(str, sweep.resolutions))} px; " \
           f"fold(s) {', '.join(map(str, sweep.folds))}"
    out = [f'<h2 id="{e(sweep.name)}">{e(sweep.title)}</h2>',
           f"<p class=small>sweep <code>{e(sweep.name)}</code> ({e(grid)}); "
           f"definition {e(sweep_result.folder)}/sweep.yaml</p>"]
    if sweep.note:
        out.append(f"<p class=note>{e(sweep.note)}</p>")
    out += [f"<table><tr>{head}</tr>{''.join(body)}</table>",
            "<p class=small>paper: the paper's table (its Params column as printed there; the paper ran every "
            "ablation with the ViT-B encoders on DFEW fold 1 at 160 px); ours: mean ± sample std over the folds run; "
            "Δ = ours − paper; trainable: this project's trainable parameter count; − "
            f"{e(reference)}: the difference from the reference row on the same test clips (same folds and seeds) "
            "with its paired 95% bootstrap interval, bold and starred (*) when the interval excludes 0, i.e. "
            "larger than the test-set noise.</p>",
            figure(figures.ablation_figure(fig_rows, sweep.title), f"{sweep.title}: ours against the paper")]
    return "\n".join(out)


def ablation_cells(g: Group, d: str, res: str, labels: list, many: bool, has_params: bool, expected: int,
                   reference: Optional[str]) -> tuple[str, Optional[dict]]:
    """One variant's cells in one (dataset, resolution) of an ablation table (``many``: the table
    has several, so each line names its own) and its aggregate row."""
    v = g.variant
    row = g.table.get(d, {}).get(res)
    runs = [r for r in g.runs if (r.dataset, r.resolution) == (d, res)]
    done = [r for r in runs if r.status == "done"]
    key = f"{g.name}/{d}/res{res}"
    paper = v.paper if v else None
    cells = "".join(f"<td class=label>{e(x)}</td>" for x in labels)
    if many:
        cells += f"<td>{e(dataset_title(d))}</td><td>{e(res)}</td>"
    cells += num(f"{key}/paper_uar", fmt(paper and paper["uar"]), "num paper")
    cells += num(f"{key}/paper_war", fmt(paper and paper["war"]), "num paper")
    if has_params:
        cells += num(f"{key}/paper_params", fmt(paper.get("params") if paper else None, 1), "num paper")
    cells += "".join(mean_cell(f"{key}/{m}_mean", row, m, expected) for m in ("uar", "war"))
    for m in ("uar", "war"):
        cells += delta_cell(f"{key}/{m}_delta", row and row.get(f"{m}_mean"), paper and paper[m])
    params = [r.result.get("trainable_params") for r in done if r.result.get("trainable_params")]
    cells += num(f"{key}/trainable_params", f"{params[0] / 1e6:.2f}" if params else "—")
    counts = {s: sum(r.status == s for r in runs) for s in STATUSES if s != "done"}
    status = f"{len(done)}/{len(runs)} done" + "".join(f", {n} {s}" for s, n in counts.items() if n)
    cells += f'<td class="{"num" if len(done) == len(runs) else "num missing"}">{e(status)}</td>'
    diff = g.differences.get((d, res))
    for m in ("uar", "war"):
        cells += (num(f"{key}/{m}_diff", "reference") if v and v.name == reference
                  else difference_cell(f"{key}/{m}_diff", diff and diff[m]))
    return cells, row


# -- runs ---------------------------------------------------------------------------------------

def run_section(run: Run) -> str:
    r = run.result
    ci = r.get("intervals") or {}
    head = (f"{run.group} · {dataset_title(run.dataset)} {run.resolution} px · fold {run.fold}"
            + (f" · seed {run.seed}" if run.seed is not None else "")
            + ("" if run.status == "done" else f" ({run.status}, not averaged)") + ": "
            f"UAR {fmt(r['uar'])}{ci.get('uar') and ' ' + ci_text(ci['uar']) or ''} "
            f"WAR {fmt(r['war'])}{ci.get('war') and ' ' + ci_text(ci['war']) or ''}"
            + (f" (2-clip {fmt(r['uar_2clip'])} / {fmt(r.get('war_2clip'))})" if r.get("uar_2clip") is not None
               else ""))
    parts = [f'<details id="run-{e(run.key)}"><summary>{e(head)}</summary>',
             f"<p class=small>{e(run.folder)} · run fingerprint {e(r.get('config_fingerprint'))} · "
             f"{e(r.get('precision'))} · epoch {e(r.get('epoch'))} · {e(r.get('num_test_clips'))} test clips"
             + (f" · {len(r['skipped_test_clips'])} skipped: {e(', '.join(map(str, r['skipped_test_clips'])))}"
                if r.get("skipped_test_clips") else "") + "</p>"]
    cm, names = r.get("confusion_matrix"), r.get("class_names")
    if cm and names and len(names) == len(cm):
        rec1 = figures.per_class_recall(cm)
        cm2 = r.get("confusion_matrix_2clip")
        rec2 = figures.per_class_recall(cm2) if cm2 else [None] * len(cm)
        rows = "".join(f"<tr><td>{e(n)}</td><td class=num>{sum(cm[i])}</td>"
                       + num(f"{run.key}/recall/{n}", fmt(rec1[i])) + num(f"{run.key}/recall_2clip/{n}", fmt(rec2[i]))
                       + "</tr>" for i, n in enumerate(names))
        recall = (f"<table><tr><th>class</th><th>test clips</th><th>recall (%)</th><th>recall 2-clip (%)</th></tr>"
                  f"{rows}</table>")
        parts.append(f"<div class=flex><div>{recall}</div>"
                     + figure(figures.confusion_figure(cm, names, f"UAR {fmt(r['uar'])}  WAR {fmt(r['war'])} (1-clip)"),
                              "confusion matrix, 1-clip: counts, colour = share of the true class")
                     + "</div>")
    else:
        parts.append("<p class=missing>no confusion matrix in result.json</p>")
    steps, evals = read_curves(run.folder)
    if steps["x"] or evals["x"]:
        parts.append(figure(figures.curves_figure(steps, evals, steps["unit"]), "from log.jsonl: train loss and "
                            "learning rate per logged step, test UAR/WAR per evaluation"))
    else:
        parts.append("<p class=small>no training log (log.jsonl) in the run folder</p>")
    parts.append("</details>")
    return "\n".join(parts)


def problems_section(runs: list[Run], problems: list[str]) -> str:
    """The runs not counted (missing, failed, corrupt, duplicate) and the aggregator's other
    problems (results that name no run folder)."""
    bad = [r for r in runs if r.status != "done"]
    others = "".join(f"<li class=failed>{e(p)}</li>" for p in problems)
    others = f"<p>Also found:</p><ul>{others}</ul>" if others else ""
    if not bad:
        return ('<h2 id="problems">Missing or failed runs</h2><p>None: every expected run has its result, once.</p>'
                + others)
    rows = "".join(f'<tr><td>{e(r.group)}</td><td>{e(dataset_title(r.dataset))}</td><td class=num>{e(r.resolution)}</td>'
                   f'<td class=num>{r.fold}{"" if r.seed is None else f" · seed {r.seed}"}</td>'
                   f'<td class="status-{r.status}">{e(r.status)}</td>'
                   f'<td>{e(r.folder or "")}</td><td>{e(r.detail)}</td></tr>' for r in bad)
    return (f'<h2 id="problems">Missing or failed runs ({len(bad)})</h2>'
            "<table><tr><th>group</th><th>dataset</th><th>res</th><th>fold</th><th>status</th><th>folder</th>"
            f"<th>detail</th></tr>{rows}</table>" + others)


def render(report: Report) -> str:
    runs = report.runs()
    counts = {s: sum(r.status == s for r in runs) for s in STATUSES}
    table1 = [(s, g) for s in report.sweeps if s.sweep.layout == "table1" for g in s.groups]
    ablations = [s for s in report.sweeps if s.sweep.layout != "table1"]
    nav = ['<a href="#table1">Table 1</a>'] + [f'<a href="#{e(s.sweep.name)}">{e(s.sweep.name)}</a>' for s in ablations]
    nav += ['<a href="#problems">missing/failed</a>', '<a href="#runs">runs</a>']
    body = ["<h1>MMA-DFER: these runs beside the paper</h1>",
            f"<p class=small>runs root {e(report.root)} · {len(runs)} runs: "
            f"{', '.join(f'{n} {s}' for s, n in counts.items() if n or s != 'duplicate')} · written "
            f"{datetime.datetime.now().isoformat(timespec='seconds')}</p>",
            f"<nav>{''.join(nav)}</nav>", '<h2 id="table1">Table 1 reproduction</h2>']
    if not table1 and not report.loose:
        body.append("<p class=missing>No Table 1 runs (configs/sweeps/table1.yaml, or runs outside any sweep).</p>")
    for s, g in table1:
        body.append(table1_section(g, len(s.sweep.folds), f"{s.sweep.title}: {g.name}"))
    if report.loose:
        body.append(table1_section(report.loose, None, "Runs outside any sweep"))
    body += [ablation_section(s) for s in ablations]
    body.append(problems_section(runs, [p for g in report.groups() for p in g.problems]))
    body.append('<h2 id="runs">Runs</h2><p class=small>Per run: recall per class, the confusion matrix and the '
                "training curves (click to open).</p>")
    body += [run_section(r) for r in runs if r.result is not None]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>MMA-DFER report: {e(report.root)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")

"""The paper's headline findings, checked against a report's numbers ("Compared with the paper").

A sweep script states what the paper found as `Claim`s; the report checks each against its own
trends (and the DomainNet grid) and says, for each, whether this run shows the same sign:
`reproduced`, `NOT reproduced`, or `not checked` when the groups it needs are missing or rest on
fewer than 3 trials (no verdict from so few independent models). Groups
are named by the part after the source (`full`, `quantity=min`: the group of that intervention
with the smallest value), so one claim serves the embedded default and the real data.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from analysis.groups import group_sort_key, split_target


class NotChecked(Exception):
    """A claim this run cannot check; the message says why (a group missing, too few trials)."""


@dataclass(frozen=True)
class Claim:
    finding: str                                            # the paper's finding, in words
    check: Callable[[pd.DataFrame, pd.DataFrame], bool]   # (trends, domain grid) -> same sign? (or NotChecked)


def _rows(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """Fitted rows whose label (target left out) is `name`: `full` or `quantity=5000` match any source,
    `imagenet/full` one source; `x=min` / `x=max` pick the smallest / largest value of intervention
    x; `a|b` takes the first alternative that matches."""
    if "|" in name:
        found = (_rows(table, alt) for alt in name.split("|"))
        return next((rows for rows in found if not rows.empty), table.iloc[0:0])
    label = table["group"].map(lambda g: split_target(str(g))[1])
    rest = label if "/" in name else label.map(lambda g: g.split("/", 1)[-1])
    fitted = table[(table["trend_origin"] == "fit") & table["mean_er"].notna()]
    rest = rest[fitted.index]
    match = re.fullmatch(r"(\w+)=(min|max)", name)
    if not match:
        return fitted[rest == name]
    same = rest[rest.str.startswith(f"{match.group(1)}=")]
    if same.empty:
        return fitted.iloc[0:0]
    ordered = sorted(same.unique(), key=group_sort_key)
    return fitted[rest == (ordered[0] if match.group(2) == "min" else ordered[-1])]


def _checked(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """`_rows`, or NotChecked when the group is missing or rests on too few trials for a verdict."""
    rows = _rows(table, name)
    if rows.empty:
        raise NotChecked(f"no {name} group in this run")
    if "few_trials" in rows.columns and rows["few_trials"].fillna(False).astype(bool).any():
        raise NotChecked(f"{name} has fewer than 3 trials")
    return rows


def _mean(table: pd.DataFrame, name: str | float) -> float:
    if isinstance(name, (int, float)):
        return float(name)
    return float(_checked(table, name)["mean_er"].mean())


def higher(a: str, b: str | float = 0.0) -> Callable:
    """Group `a`'s mean ER is above `b`'s (a group, or a number: 0 = the baseline trend)."""
    def check(table: pd.DataFrame, grid: pd.DataFrame) -> bool:
        return _mean(table, a) > _mean(table, b)
    return check


def overlap(a: str, b: str) -> Callable:
    """The 95% CIs of the two groups' mean ER overlap (no difference)."""
    def check(table: pd.DataFrame, grid: pd.DataFrame) -> bool:
        ra, rb = _checked(table, a), _checked(table, b)
        return bool(ra["er_ci_lo"].max() <= rb["er_ci_hi"].min() and rb["er_ci_lo"].max() <= ra["er_ci_hi"].min())
    return check


def only_pair_separates(id_domain: str, ood_domain: str) -> Callable:
    """In the DomainNet grid, the CI of (id, ood) excludes 0 and every other pair's includes it."""
    def check(table: pd.DataFrame, grid: pd.DataFrame) -> bool:
        if grid.empty or not ((grid["id_domain"] == id_domain) & (grid["ood_domain"] == ood_domain)).any():
            raise NotChecked(f"no {id_domain} -> {ood_domain} pair in this run")
        if (grid["n_trials"] < 3).any() if "n_trials" in grid.columns else False:
            raise NotChecked("the grid's cells rest on fewer than 3 trials")
        separates = (grid["er_ci_lo"] > 0) | (grid["er_ci_hi"] < 0)
        mine = (grid["id_domain"] == id_domain) & (grid["ood_domain"] == ood_domain)
        return bool(separates[mine].all() and not separates[~mine].any())
    return check


def compare(claims: list[Claim], table: pd.DataFrame, grid: pd.DataFrame | None = None) -> list[str]:
    """One line per claim: `reproduced`, `NOT reproduced` or `not checked (why)`, then the paper's finding."""
    grid = grid if grid is not None else pd.DataFrame(columns=["id_domain", "ood_domain", "er_ci_lo", "er_ci_hi"])
    lines = []
    for claim in claims:
        try:
            verdict = "reproduced" if claim.check(table, grid) else "NOT reproduced"
        except NotChecked as reason:
            verdict = f"not checked ({reason})"
        lines.append(f"{verdict}: {claim.finding}")
    return lines


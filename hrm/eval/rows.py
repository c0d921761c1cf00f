"""Score one prediction of one row through every tier: positions, syntax, compile, AST, tests.

The same scorer serves the model, the baselines and the search candidates, so their numbers are
comparable by construction. Tiers are nested: a row reaches a tier only if it reached all lower
ones (syntax < compile < AST match < tests resolved). A prediction that leaves the buggy code as
it is repairs nothing: it fails every code tier and its tests are not run (`unchanged`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from hrm.eval import code_checks
from hrm.eval.code_checks import CodeCheck, check_fragments, check_in_files
from hrm.eval.decoding import special_reason, special_tokens_of
from hrm.eval.execution import ExecutionTier, RowContext
from hrm.eval.patches import prediction_patch
from hrm.eval.token_metrics import TokenScores, score_outputs

UNCHANGED = "unchanged: the prediction is the buggy code, not a repair"

TIER_NAMES = ("syntax", "compile", "ast_match", "tests")


@dataclass
class RowResult:
    """Everything measured for one prediction of one row (a line of predictions.jsonl)."""

    instance_id: str
    kind: str
    """Bug kind (`hrm.sequences.SequenceRecord.kind`)."""
    repo: str
    prediction: list[str]
    """Decoded predicted regions."""
    reference: list[str]
    exact: bool
    """The predicted regions equal the reference's, text for text."""
    tokens: TokenScores
    code: CodeCheck
    resolved: bool | None
    """None when the test tier did not run (see `test_reason`)."""
    test_reason: str
    test_outcomes: dict[str, str]
    tier: int
    """Highest tier reached, 0..4 (0: not even syntax); -1 when excluded."""
    tier_score: float | None
    """Sum of the weights of the tiers reached; None when excluded."""
    has_env: bool
    special_tokens: list[str] = field(default_factory=list)
    """Special tokens the prediction holds inside its target (`hrm.eval.decoding`): when any,
    the row fails syntax, compile, AST match and tests (reason in `code.reason`)."""
    outputs: list[list] = field(default_factory=list)
    """The prediction as [position, output tokens] pairs (positions it changes)."""
    model_patch: str | None = None
    """The prediction as a unified diff against the buggy tree (`hrm.eval.patches`; '' when it
    changes nothing); None without an environment (no buggy files) or when the prediction is
    not code (special tokens, a wrong number of regions)."""
    loss: float | None = None
    q_halt: float | None = None
    steps: int | None = None

    def to_json(self) -> dict[str, Any]:
        row = asdict(self)
        row["tier_name"] = TIER_NAMES[self.tier - 1] if self.tier > 0 else (
            "excluded" if self.tier < 0 else "none")
        return row


def tiers_reached(code: CodeCheck, resolved: bool | None) -> int:
    """Nested tier count: syntax (a None syntax check defers to compilation), compile, AST, tests."""
    syntax = code.syntax if code.syntax is not None else bool(code.compiles)
    steps = (syntax, bool(code.compiles), bool(code.ast_match), resolved is True)
    reached = 0
    for ok in steps:
        if not ok:
            break
        reached += 1
    return reached


def clear_caches() -> None:
    """Forget the static tiers' content-keyed caches (parses, token scans, edit alignments):
    benchmarks clear them to measure one evaluation's reuse and no more."""
    code_checks.clear_caches()


def tier_score(tier: int, weights: Sequence[float]) -> float:
    return float(sum(weights[:tier]))


class RowScorer:
    """Scores predictions of a split's rows; owns the execution tier (None: no tests)."""

    def __init__(self, tier_weights: Sequence[float], execution: ExecutionTier | None,
                 run_tests: bool):
        self.weights = list(tier_weights)
        self.execution = execution
        self.run_tests = run_tests

    def context(self, record: Any) -> RowContext | str:
        """The row's execution context, or why it has none (reported per row).

        Regions cut to a window keep every change (rows whose change falls outside are not in
        the sequences), so they splice and run like whole ones.
        """
        if self.execution is None:
            return "no instances file given: no environment"
        return self.execution.context(record.instance_id, record.repo, record.hunks)

    def score(self, record: Any, pred_outputs: dict[int, tuple[int, ...]],
              ref_outputs: dict[int, tuple[int, ...]], pred_hunks: list[str], ref_hunks: list[str],
              ) -> RowResult:
        """Score one prediction: `pred_outputs` / `ref_outputs` in `label_outputs` form,
        `pred_hunks` the decoded prediction (`hrm.eval.decoding.Decoded`), `ref_hunks` the
        reference regions."""
        tokens = score_outputs(pred_outputs, ref_outputs, record.segments)
        ctx = self.context(record)
        unchanged = list(pred_hunks) == [h.buggy_text for h in record.hunks]
        code = self.code_check(ctx, pred_hunks, ref_hunks)
        specials = special_tokens_of(pred_hunks)
        reason = special_reason(specials) if specials else (UNCHANGED if unchanged else "")
        if reason and not code.excluded:
            # Not code the model wrote, or no repair at all: no code tier can be reached.
            code = replace(code, syntax=None if code.syntax is None else False, compiles=False,
                           ast_match=False, reason=reason)
        resolved, test_reason, outcomes = self.test(ctx, code, pred_hunks)
        tier = -1 if code.excluded else tiers_reached(code, resolved)
        return RowResult(
            instance_id=record.instance_id,
            kind=record.kind,
            repo=record.repo,
            prediction=list(pred_hunks),
            reference=list(ref_hunks),
            exact=list(pred_hunks) == list(ref_hunks) and not specials,
            tokens=tokens,
            code=code,
            resolved=resolved,
            test_reason=test_reason,
            test_outcomes=outcomes,
            tier=tier,
            tier_score=None if tier < 0 else tier_score(tier, self.weights),
            has_env=isinstance(ctx, RowContext),
            special_tokens=list(specials),
            outputs=[[int(p), [int(t) for t in o]] for p, o in sorted(pred_outputs.items())],
            model_patch=(prediction_patch(ctx.hunks, pred_hunks, ctx.buggy_files)
                         if isinstance(ctx, RowContext) and not specials
                         and len(pred_hunks) == len(ctx.hunks) else None),
        )

    @staticmethod
    def code_check(ctx: RowContext | str, pred_hunks: list[str], ref_hunks: list[str]) -> CodeCheck:
        if isinstance(ctx, RowContext):
            if len(ref_hunks) != len(ctx.hunks):
                raise ValueError(f"{ctx.instance.instance_id}: reference has {len(ref_hunks)} "
                                 f"hunk(s), the instance {len(ctx.hunks)}")
            return check_in_files(pred_hunks, ref_hunks, ctx.hunks, ctx.buggy_files)
        return check_fragments(pred_hunks, ref_hunks)

    def test(self, ctx: RowContext | str, code: CodeCheck, pred_hunks: list[str],
             ) -> tuple[bool | None, str, dict[str, str]]:
        """Run the tests when an environment exists and the prediction compiles in its file."""
        if not isinstance(ctx, RowContext):
            return None, ctx, {}
        if not self.run_tests:
            return None, "tests disabled (eval.run_tests: false)", {}
        if len(pred_hunks) != len(ctx.hunks):
            return False, f"prediction has {len(pred_hunks)} hunks, expected {len(ctx.hunks)}", {}
        if code.reason:
            return False, f"not run: {code.reason}", {}
        if code.compiles is not True:
            # The spliced module does not compile, so importing it fails: no run needed.
            return False, "does not compile in its file", {}
        outcome = self.execution.run(ctx, pred_hunks)
        return outcome.resolved, outcome.reason, outcome.outcomes

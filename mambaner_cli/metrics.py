"""Strict entity-level scores (seqeval, IOB2 scheme), the figures every benchmark reports."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
    """Micro precision/recall/F1 (in %) and the same per type, strict mode: a mention counts only
    when its type and both boundaries are right."""
    # imported here: seqeval pulls in scikit-learn (seconds), which tagging, a user of only_types, never needs
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    gold, predicted = [list(s) for s in gold], [list(s) for s in predicted]
    kwargs = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    report = classification_report(gold, predicted, output_dict=True, **kwargs)
    per_type = {label: {"precision": 100 * v["precision"], "recall": 100 * v["recall"],
                        "f1": 100 * v["f1-score"], "support": int(v["support"])}
                for label, v in report.items() if not label.endswith(" avg")}
    return {
        "precision": 100 * precision_score(gold, predicted, **kwargs),
        "recall": 100 * recall_score(gold, predicted, **kwargs),
        "f1": 100 * f1_score(gold, predicted, **kwargs),
        "per_type": per_type,
        "sentences": len(gold),
    }


def only_types(tags: Sequence[str], types: Collection[str]) -> list[str]:
    """``tags`` with the mentions of other types read as ``O`` (whole mentions go: valid IOB2 stays valid).
    Scoring: a corpus that marks only ``types`` can neither confirm nor refute a prediction of another type;
    tagging: ``--types`` keeps only the mentions asked for."""
    return [tag if tag == "O" or tag[2:] in types else "O" for tag in tags]

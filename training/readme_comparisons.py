"""The model card's sections that compare: an adapted model beside its base, what each step of the recipe
bought, and the registers: the model beside the word-list rule on every test source and on the
cross-register check (``training.crosscheck``), and how much of a text's source its answers carry."""

from __future__ import annotations

from typing import Any

from model_runtime import ModelCard


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def register_lines(test: dict[str, Any]) -> list[str]:
    if "cross_register" not in test:
        return []
    rule = test["word_list_rule"]
    lines = [
        "",
        "## Against a word list, and across registers",
        "",
        f"The word-list rule beside the model on every test source (rule: {rule['rule']}); three-class macro-F1, "
        "polarity of the polar texts, and how often each answers neutral:",
        "",
        "| test set | texts | macro-F1 model | macro-F1 rule | polarity model | polarity rule | neutral model "
        "| neutral rule |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in test["by_source"].items():
        r = rule["by_source"][name]
        lines.append(
            f"| {name} | {m['examples']:,} | {m['macro_f1']:.3f} | {r['macro_f1']:.3f} | "
            f"{_pct(m.get('polarity_accuracy'))} | {_pct(r.get('polarity_accuracy'))} | "
            f"{_pct(m.get('answered_neutral'))} | {_pct(r.get('answered_neutral'))} |"
        )
    check = test["cross_register"]
    model, by_rule = check["model"], check["word_list_rule"]
    lines += [
        "",
        f"The cross-register check (`training/checks/cross_register.tsv`, {model['texts']} hand-written sentences "
        "never trained on: opinions in the registers whose training texts are neutral, neutral sentences in the "
        "registers whose training texts are polar, one-clause opinions, negations, complaints without an opinion "
        "word, contrasts):",
        "",
        "| | model | word-list rule |",
        "|---|---|---|",
        f"| three-class accuracy | {model['accuracy']:.3f} | {by_rule['accuracy']:.3f} |",
        f"| three-class macro-F1 | {model['macro_f1']:.3f} | {by_rule['macro_f1']:.3f} |",
        f"| polarity of the polar sentences | {_pct(model['polarity_accuracy'])} | "
        f"{_pct(by_rule['polarity_accuracy'])} |",
    ]
    for kind, m in model["by_kind"].items():
        lines.append(
            f"| {kind.replace('_', ' ')} ({m['texts']}) | {m['accuracy']:.3f} | "
            f"{by_rule['by_kind'][kind]['accuracy']:.3f} |"
        )
    leak = test["source_leak"]
    lines += [
        "",
        f"A text's source told from the model's three probabilities (cross-validated, balanced over the "
        f"{len(leak['sources'])} test sources): {leak['balanced_accuracy_from_probabilities']:.3f}; from its true "
        f"label alone: {leak['balanced_accuracy_from_labels']:.3f}; chance {leak['chance']:.3f}. What the answers "
        f"tell beyond the label ({leak['excess']:+.3f}) is register the model carries into them.",
    ]
    return lines


def adaptation_lines(card: ModelCard) -> list[str]:
    a = card.adaptation
    if not a:
        return []
    base, adapted = a["user_test"]["base"], a["user_test"]["adapted"]
    lines = [
        "",
        f"## Adapted from {card.base['name']} {card.base['version']}",
        "",
        f"On the user's {adapted['examples']:,} held-out test texts ({a['data']['texts']:,} texts in "
        f"`{a['data']['file']}`, sha256 `{a['data']['sha256'][:16]}...`; split {a['data']['split']}), in "
        f"{a['seconds']:.0f} s:",
        "",
        "| | base | adapted |",
        "|---|---|---|",
        *(f"| {k} | {base[k]:.4f} | {adapted[k]:.4f} |" for k in ("accuracy", "macro_f1", "ece", "log_loss")),
        *(
            f"| F1 {label} | {base['per_class'][label]['f1']:.4f} | {adapted['per_class'][label]['f1']:.4f} |"
            for label in card.labels
        ),
    ]
    before, after = a["base_sources"]["before"], a["base_sources"]["after"]
    if after:
        lines += [
            "",
            "The base's own test sources (what was forgotten):",
            "",
            "| source | base | adapted |",
            "|---|---|---|",
        ]
        lines += [f"| {s} | {before[s]['accuracy']:.4f} | {after[s]['accuracy']:.4f} |" for s in after if s in before]
    return lines


def steps_lines(card: ModelCard) -> list[str]:
    steps = card.training.get("recipe_steps")
    if not steps:
        return []
    columns = steps["columns"]
    return [
        "",
        "## What each step of the recipe bought",
        "",
        steps["note"],
        "",
        "| step | " + " | ".join(columns) + " | measured |",
        "|---" * (len(columns) + 2) + "|",
        *(f"| {r['step']} | " + " | ".join(r["cells"]) + f" | {r['measured']} |" for r in steps["rows"]),
    ]

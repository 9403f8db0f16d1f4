"""A unified diff as side-by-side rows, for the plan page. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the side-by-side view: `kind` is context, change, hunk or file."""

    kind: str
    left: str | None
    right: str | None


def side_by_side(diff: str) -> list[Row]:
    """Rows pairing each removed line with the added line at the same place of its block."""
    rows: list[Row] = []
    removed: list[str] = []
    added: list[str] = []

    def flush() -> None:
        for i in range(max(len(removed), len(added))):
            rows.append(
                Row(
                    "change",
                    removed[i] if i < len(removed) else None,
                    added[i] if i < len(added) else None,
                )
            )
        removed.clear()
        added.clear()

    for line in diff.splitlines():
        if line.startswith(("---", "+++")):
            flush()
            rows.append(Row("file", line[4:], None))
        elif line.startswith("@@"):
            flush()
            rows.append(Row("hunk", line, line))
        elif line.startswith("-"):
            removed.append(line[1:])
        elif line.startswith("+"):
            added.append(line[1:])
        else:
            flush()
            text = line[1:] if line.startswith(" ") else line
            rows.append(Row("context", text, text))
    flush()
    return rows

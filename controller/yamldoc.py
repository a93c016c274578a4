"""YAML documents that remember where each value came from.

``load(text, filename)`` returns a ``Doc``: the plain Python data plus the line of every value, keyed by
its path ("tenants[0].domains[1].cidr"). Errors then name file and line. Duplicate keys, which PyYAML
would silently merge, are refused. Only the safe YAML subset is read (no Python objects).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml


class DocError(Exception):
    """A document could not be read; ``str()`` is "file:line: reason"."""

    def __init__(self, filename, line, reason):
        self.filename, self.line, self.reason = filename, line, reason
        super().__init__(f"{filename}:{line}: {reason}" if line else f"{filename}: {reason}")


@dataclass
class Doc:
    filename: str
    data: object
    lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, path: str) -> int | None:
        """The line of ``path`` or of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return self.lines.get("")

    def where(self, path: str) -> str:
        line = self.line_of(path)
        return f"{self.filename}:{line}" if line else self.filename


def join(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def load(text: str, filename: str = "<input>") -> Doc:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise DocError(filename, mark.line + 1 if mark else None, exc.problem or str(exc)) from None
    except yaml.YAMLError as exc:
        raise DocError(filename, None, str(exc)) from None
    doc = Doc(filename, None)
    if node is None:
        doc.data = {}
        return doc
    doc.data = _build(node, "", doc)
    return doc


def load_file(path: str) -> Doc:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise DocError(path, None, exc.strerror or str(exc)) from None
    except UnicodeDecodeError:
        raise DocError(path, None, "is not UTF-8 text") from None
    return load(text, path)


_constructor = yaml.SafeLoader("")


def _build(node, path, doc):
    doc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise DocError(doc.filename, key_node.start_mark.line + 1, "mapping keys must be plain scalars")
            key = _scalar(key_node, doc)
            if key == "<<":
                raise DocError(doc.filename, key_node.start_mark.line + 1, "YAML merge keys are not supported")
            if key in out:
                raise DocError(doc.filename, key_node.start_mark.line + 1, f"duplicate key {key!r}")
            out[key] = _build(value_node, join(path, key), doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, join(path, i), doc) for i, item in enumerate(node.value)]
    return _scalar(node, doc)


def _scalar(node, doc):
    try:
        return _constructor.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        raise DocError(doc.filename, node.start_mark.line + 1, exc.problem or str(exc)) from None

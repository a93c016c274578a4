"""YAML documents that remember where each value came from.

``load(text, filename)`` returns a ``Doc``: the plain Python data plus the line of every value, keyed by
its path ("tenants[0].domains[1].cidr"). Errors then name file and line. Duplicate keys, which PyYAML
would silently merge, are refused. Only the safe YAML subset is read (no Python objects), and only values
JSON can carry (text, integers, finite numbers, booleans, null, lists, mappings): a date or ``!!binary`` is
refused where it is written, not later. Safety limits, each a file:line error: nesting deeper than
MAX_DEPTH, and aliases that would add more than MAX_ALIAS_VALUES values by expansion (an "alias bomb",
a few lines that expand to billions of values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import yaml

MAX_DEPTH = 64  # levels of mappings and lists; policy documents use fewer than 10
MAX_ALIAS_VALUES = 100_000  # values that alias expansion may add beyond those written out in the text


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
        node = yaml.compose(text, Loader=_Loader)
    except RecursionError:  # PyYAML's composer recurses once per level
        raise DocError(filename, None, f"nests too deep (at most {MAX_DEPTH} levels)") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise DocError(filename, mark.line + 1 if mark else None, exc.problem or str(exc)) from None
    except yaml.YAMLError as exc:
        raise DocError(filename, None, str(exc)) from None
    doc = Doc(filename, None)
    if node is None:
        doc.data = {}
        return doc
    doc.data = _build(node, "", doc, _Budget())
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


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing to compose nodes nested deeper than MAX_DEPTH (its composer recurses)."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH + 1:
                raise yaml.composer.ComposerError(None, None, f"nests too deep (at most {MAX_DEPTH} levels)",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_constructor = yaml.SafeLoader("")
_JSON_SCALARS = (str, int, float, bool, type(None))


class _Budget:
    """What one load may still build: values built so far against distinct nodes in the text."""

    def __init__(self):
        self.built = 0
        self.nodes: set[int] = set()

    def spend(self, node, path, depth, doc):
        line = node.start_mark.line + 1
        if depth > MAX_DEPTH:  # an alias inside its own anchor
            raise DocError(doc.filename, line, f"{path[:100]}...: nests too deep (at most {MAX_DEPTH} levels)")
        self.built += 1
        self.nodes.add(id(node))
        if self.built > len(self.nodes) + MAX_ALIAS_VALUES:
            raise DocError(doc.filename, line, f"{path}: YAML aliases expand to more than {MAX_ALIAS_VALUES} "
                           "values; write the values out or use fewer aliases")


def _build(node, path, doc, budget, depth=0):
    budget.spend(node, path, depth, doc)
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
            out[key] = _build(value_node, join(path, key), doc, budget, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, join(path, i), doc, budget, depth + 1) for i, item in enumerate(node.value)]
    return _scalar(node, doc, path)


def _scalar(node, doc, path=""):
    line = node.start_mark.line + 1
    where = f"{path}: " if path else ""
    try:
        value = _constructor.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        raise DocError(doc.filename, line, exc.problem or str(exc)) from None
    except ValueError as exc:  # e.g. an integer longer than Python converts (4300 digits)
        raise DocError(doc.filename, line, f"{where}unreadable value: {str(exc)[:120]}") from None
    if not isinstance(value, _JSON_SCALARS):
        what = {"bytes": "binary data (!!binary)", "date": "a date", "datetime": "a timestamp"}.get(
            type(value).__name__, f"a {type(value).__name__}")
        raise DocError(doc.filename, line, f"{where}{what} is not a value Canopy reads; quote it to make it text")
    if isinstance(value, float) and not math.isfinite(value):
        raise DocError(doc.filename, line, f"{where}{node.value!r} is not a finite number")
    return value

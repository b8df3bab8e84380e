"""Named plug-ins (storage formats, sampling schemes): the built-in ones, plus any a third-party package
registers through a Python entry point, e.g. in its ``pyproject.toml``::

    [project.entry-points."jetstore.schemes"]
    uniform = "mypackage.uniform:SCHEME"

Entry points are loaded on the first lookup of a name that is not built in, so a broken plug-in never
gets in the way of the built-in ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points
from typing import Generic, Protocol, TypeVar

from jetstore.errors import JetstoreError


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    """Plug-ins of one ``kind`` by name: built-ins first, then the entry points of ``group``."""

    def __init__(self, kind: str, group: str, builtins: Iterable[T], error: type[JetstoreError] = JetstoreError):
        self.kind, self.group, self.error = kind, group, error
        self.items: dict[str, T] = {item.name: item for item in builtins}
        self._loaded = False

    def get(self, name: str) -> T:
        if name not in self.items:
            self._load()
        try:
            return self.items[name]
        except KeyError:
            raise self.error(f"unknown {self.kind} '{name}' (choose from {', '.join(self.names())})") from None

    def names(self) -> tuple[str, ...]:
        self._load()
        return tuple(self.items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for point in entry_points(group=self.group):
            if point.name in self.items:
                continue
            try:
                item = point.load()
            except Exception as exc:  # a broken plug-in: named when asked for, never in the way of the others
                raise self.error(f"the {self.kind} '{point.name}' registered by {point.value} cannot be loaded "
                                 f"({type(exc).__name__}: {exc})") from None
            if getattr(item, "name", None) != point.name:
                raise self.error(f"entry point {point.value} registers {self.kind} '{point.name}' but holds "
                                 f"{getattr(item, 'name', type(item).__name__)!r}")
            self.items[point.name] = item

from collections.abc import Callable
from typing import Any

class Builder:
    cls: type
    names: tuple[str, ...]
    def __init__(
        self,
        cls: type,
        names: tuple[str, ...],
        defaults: tuple[Any, ...],
        factories: tuple[Callable[[], Any] | None, ...],
        required: object,
    ) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def install(self) -> None: ...
    def reduce(self, obj: Any) -> tuple[type, tuple[Any, ...]]: ...

"""CloudFormation's intrinsic functions and conditions, evaluated against local stand-ins.

CloudFormation evaluates these at deploy time; nothing on this machine does that for us (the SAM
translator resolves parameters in a few properties of its own resources only, cfn-lint checks but
does not evaluate), so the evaluation is written here: ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``,
``Fn::Join``, ``Fn::Select``, ``Fn::Split``, ``Fn::FindInMap``, ``Fn::Base64``, ``Fn::If`` and the
condition functions (``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or``, ``Fn::Contains``,
``Condition``). What a resource's ``Ref`` or attribute is comes from a :data:`Reference`
callback, so one evaluator serves both reading the template (which resource points at which) and
resolving values for a local run (table names, queue URLs).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ...exceptions import TemplateError

__all__ = ["NO_VALUE", "Evaluator", "ParameterValue", "Reference", "Scope", "scalar_text"]

NO_VALUE: Final = object()
"""``AWS::NoValue``: the property or list item it stands for is left out."""

Reference = Callable[[str, str | None], Any]
"""``(logical id, attribute)`` to a value: ``attribute`` is ``None`` for a ``Ref``."""

ParameterValue = str | list[str]

_SUB_VARIABLE: Final = re.compile(r"\$\{([^}]*)\}")
_SUPPORTED: Final = (
    "Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::Select, Fn::Split, Fn::FindInMap, Fn::Base64, "
    "Fn::If, Fn::Equals, Fn::Not, Fn::And, Fn::Or, Fn::Contains, Condition"
)


@dataclass(frozen=True)
class Scope:
    """What names mean in one template: parameter values, pseudo parameters, the condition
    definitions, ``Mappings``, the types of the resources that exist (their ``Condition`` holds)
    and the ids of those left out."""

    parameters: Mapping[str, ParameterValue]
    pseudo: Mapping[str, ParameterValue]
    conditions: Mapping[str, Any] = field(default_factory=dict)
    mappings: Mapping[str, Any] = field(default_factory=dict)
    resources: Mapping[str, str] = field(default_factory=dict)
    left_out: frozenset[str] = frozenset()


def scalar_text(value: Any, where: str) -> str:
    """A scalar as CloudFormation passes it on: strings as they are, booleans as ``true`` and
    ``false``, numbers in decimal.

    :raises TemplateError: ``value`` is a list or a mapping.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TemplateError(f"{where}: expected a string, got {value!r}")


class Evaluator:
    """Evaluates template values in a :class:`Scope`; ``where`` prefixes every error message.

    Conditions are evaluated on first use and remembered; a condition that refers to itself is an
    error, as in CloudFormation.
    """

    def __init__(self, scope: Scope, reference: Reference, where: str = "template") -> None:
        self.scope = scope
        self.reference = reference
        self.where = where
        self._conditions: dict[str, bool] = {}
        self._evaluating: set[str] = set()
        self._functions: dict[str, Callable[[Any], Any]] = {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": self._join,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::FindInMap": self._find_in_map,
            "Fn::Base64": self._base64,
            "Fn::If": self._if,
            "Fn::Equals": self._equals,
            "Fn::Not": lambda arg: not self.truth(self._args(arg, 1)[0]),
            "Fn::And": lambda arg: all(self.truth(item) for item in self._list(arg)),
            "Fn::Or": lambda arg: any(self.truth(item) for item in self._list(arg)),
            "Fn::Contains": self._contains,
            "Condition": lambda name: self.condition(self.text(name)),
        }

    def at(self, where: str) -> Evaluator:
        """The same evaluator (sharing its evaluated conditions), reporting errors at ``where``."""
        other = Evaluator(self.scope, self.reference, where)
        other._conditions = self._conditions
        other._evaluating = self._evaluating
        return other

    def __call__(self, node: Any) -> Any:
        """``node`` with every intrinsic evaluated and ``AWS::NoValue`` left out of mappings and
        lists (the result itself is :data:`NO_VALUE` when ``node`` is one).

        :raises TemplateError: an unknown name, an unsupported function, a malformed argument.
        """
        if isinstance(node, dict):
            if len(node) == 1:
                ((name, argument),) = node.items()
                function = self._functions.get(name)
                if function is not None:
                    return function(argument)
                if name.startswith("Fn::"):
                    raise TemplateError(
                        f"{self.where}: {name} is not supported locally (supported: {_SUPPORTED})"
                    )
            evaluated = {key: self(value) for key, value in node.items()}
            return {key: value for key, value in evaluated.items() if value is not NO_VALUE}
        if isinstance(node, list):
            return [value for value in map(self, node) if value is not NO_VALUE]
        return node

    def text(self, node: Any) -> str:
        """``node`` evaluated to a string (see :func:`scalar_text`)."""
        return scalar_text(self(node), self.where)

    def condition(self, name: str) -> bool:
        """The value of the condition ``name`` of the template's ``Conditions``.

        :raises TemplateError: no such condition, or it refers to itself.
        """
        if name in self._conditions:
            return self._conditions[name]
        if name not in self.scope.conditions:
            raise TemplateError(f"{self.where}: no condition named {name!r} in Conditions")
        if name in self._evaluating:
            raise TemplateError(f"{self.where}: condition {name!r} refers to itself")
        self._evaluating.add(name)
        try:
            value = self.at(f"condition {name}").truth(self.scope.conditions[name])
        finally:
            self._evaluating.discard(name)
        self._conditions[name] = value
        return value

    # -- the functions -------------------------------------------------------------------------

    def _ref(self, argument: Any) -> Any:
        name = self.text(argument)
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.scope.pseudo:
            return self.scope.pseudo[name]
        if name in self.scope.parameters:
            return self.scope.parameters[name]
        if name in self.scope.resources:
            return self._resolved(name, None)
        raise self._unknown(name)

    def _get_att(self, argument: Any) -> Any:
        if isinstance(argument, str):
            resource, _, attribute = argument.partition(".")
        else:
            resource, attribute = (self.text(part) for part in self._args(argument, 2))
        if resource not in self.scope.resources or not attribute:
            raise self._unknown(resource)
        return self._resolved(resource, attribute)

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = self._args(argument, 2)
            if not isinstance(variables, dict):
                raise TemplateError(f"{self.where}: Fn::Sub takes [string, {{variables}}]")
        else:
            text, variables = argument, {}
        if not isinstance(text, str):
            raise TemplateError(f"{self.where}: Fn::Sub takes a string, not {text!r}")

        def replace(found: re.Match[str]) -> str:
            name = found.group(1).strip()
            if name.startswith("!"):
                return "${" + found.group(1)[1:] + "}"  # ${!Literal} stands for ${Literal}
            if name in variables:
                return self.text(variables[name])
            if "." in name and name not in self.scope.pseudo:
                return scalar_text(self._get_att(name), self.where)
            return scalar_text(self._ref(name), self.where)

        return _SUB_VARIABLE.sub(replace, text)

    def _join(self, argument: Any) -> str:
        delimiter, items = self._args(argument, 2)
        return self.text(delimiter).join(
            scalar_text(item, self.where) for item in self._list(items)
        )

    def _select(self, argument: Any) -> Any:
        index, items = self._args(argument, 2)
        values = self._list(items)
        try:
            return values[int(self.text(index))]
        except (ValueError, IndexError):
            raise TemplateError(
                f"{self.where}: Fn::Select index {index!r} is not in a list of {len(values)}"
            ) from None

    def _split(self, argument: Any) -> list[str]:
        delimiter, text = self._args(argument, 2)
        return self.text(text).split(self.text(delimiter))

    def _find_in_map(self, argument: Any) -> Any:
        names = [self.text(part) for part in self._args(argument, 3)]
        found: Any = self.scope.mappings
        for name in names:
            if not isinstance(found, dict) or name not in found:
                raise TemplateError(f"{self.where}: Fn::FindInMap finds nothing at {names}")
            found = found[name]
        return found

    def _base64(self, argument: Any) -> str:
        return base64.b64encode(self.text(argument).encode()).decode()

    def _if(self, argument: Any) -> Any:
        name, when_true, when_false = self._args(argument, 3)
        return self(when_true if self.condition(self.text(name)) else when_false)

    def _equals(self, argument: Any) -> bool:
        left, right = (self(item) for item in self._args(argument, 2))
        if isinstance(left, list | dict) or isinstance(right, list | dict):
            return bool(left == right)
        return scalar_text(left, self.where) == scalar_text(right, self.where)

    def _contains(self, argument: Any) -> bool:
        items, value = self._args(argument, 2)
        return self.text(value) in [scalar_text(item, self.where) for item in self._list(items)]

    # -- helpers -------------------------------------------------------------------------------

    def truth(self, node: Any) -> bool:
        """``node`` evaluated as a condition (a boolean, or the strings ``true``/``false``)."""
        value = self(node)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false"}:
            return value.lower() == "true"
        raise TemplateError(f"{self.where}: expected a condition, got {value!r}")

    def _list(self, node: Any) -> list[Any]:
        value = self(node)
        if not isinstance(value, list):
            raise TemplateError(f"{self.where}: expected a list, got {value!r}")
        return value

    def _args(self, argument: Any, count: int) -> list[Any]:
        if not isinstance(argument, list) or len(argument) != count:
            raise TemplateError(f"{self.where}: expected a list of {count}, got {argument!r}")
        return argument

    def _resolved(self, logical_id: str, attribute: str | None) -> Any:
        try:
            return self.reference(logical_id, attribute)
        except TemplateError as error:
            raise TemplateError(f"{self.where}: {error}") from None

    def _unknown(self, name: str) -> TemplateError:
        if name in self.scope.left_out:
            return TemplateError(f"{self.where}: refers to {name}, which its Condition leaves out")
        return TemplateError(
            f"{self.where}: refers to {name!r}, which the template does not define"
        )

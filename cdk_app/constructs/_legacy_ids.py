"""Keep the logical IDs a composed part's resources had before the part existed, so no deployment is replaced.

``RoutedBedrockEndpoint`` once created every resource as its own direct child (``Endpoint/Router``,
``Endpoint/StateTable``, ...). It now composes parts (``Endpoint/RouterFunction/Router``, ...), and CloudFormation
would replace every resource whose logical ID changes: a new function URL, a new API key, an empty state table.

Mechanism: each CloudFormation element under a part gets ``override_logical_id`` with the ID CDK computes for the
*legacy path*, its path with the part's own component removed (``Endpoint/RouterFunction/Router/Resource`` ->
``Endpoint/Router/Resource``). ``make_unique_id`` replicates CDK's ``makeUniqueId`` (aws-cdk-lib
``core/lib/private/uniqueid.ts``): components named ``Default`` are dropped, the hash is the first 8 hex digits
(upper case) of the MD5 of the components joined by ``/``, the readable part is the components without
``Resource`` and without consecutive duplicates, non-alphanumerics removed, at most 240 characters; a lone
component of at most 255 characters is used as is. Two guards keep it honest:

- an element is overridden only when the replica, applied to its *current* path, reproduces the ID its stack
  allocates (``Stack.get_logical_id``): a stack with its own ``allocate_logical_id`` or renames is left alone,
  with a warning, because its legacy IDs cannot be recomputed here;
- an element whose logical ID someone already overrode keeps that override.

The overrides are applied when the endpoint is built and again by a mutating aspect at synthesis, which also
covers elements added to a part later (``endpoint.router_function.add_function_url()`` kept its legacy ID).
``tests/infrastructure/test_logical_ids.py`` compares whole templates against a snapshot taken before the split,
and ``test_legacy_ids.py`` compares the replica with CDK's own allocation on tricky paths.

Why not alternatives: only one child per scope may be named ``Default`` (the component CDK drops), and creating
the parts' resources directly in the endpoint's scope would defeat the parts being constructs of their own.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import aws_cdk as cdk
import jsii
from constructs import Construct, IConstruct

_HIDDEN_ID = "Default"
_HIDDEN_FROM_HUMAN_ID = "Resource"
_HASH_LEN = 8
_MAX_HUMAN_LEN = 240
_MAX_ID_LEN = 255
_NON_ALPHANUMERIC = re.compile(r"[^A-Za-z0-9]")


def make_unique_id(components: Sequence[str]) -> str:
    """CDK's logical ID for the construct path ``components`` (the IDs below the stack), as ``makeUniqueId``."""
    kept = [component for component in components if component != _HIDDEN_ID]
    if not kept:
        raise ValueError("cannot compute a logical id for an empty path")
    if len(kept) == 1:
        candidate = _NON_ALPHANUMERIC.sub("", kept[0])
        if len(candidate) <= _MAX_ID_LEN:
            return candidate
    digest = hashlib.md5("/".join(kept).encode("utf-8"), usedforsecurity=False).hexdigest()[:_HASH_LEN].upper()
    deduplicated: list[str] = []
    for component in kept:
        if not deduplicated or not deduplicated[-1].endswith(component):
            deduplicated.append(component)
    human = "".join(_NON_ALPHANUMERIC.sub("", c) for c in deduplicated if c != _HIDDEN_FROM_HUMAN_ID)
    return human[:_MAX_HUMAN_LEN] + digest


def _path_below(stack: cdk.Stack, construct: IConstruct) -> list[str]:
    """The construct IDs below ``stack`` (a construct ID never holds ``/``: the path splits back into them)."""
    stack_path, path = stack.node.path, construct.node.path
    return (path[len(stack_path) + 1 :] if stack_path else path).split("/")


@jsii.implements(cdk.IAspect)
class _LegacyLogicalIds:
    """Applies the legacy IDs to the elements under one part, once each (also those added after construction)."""

    def __init__(self, part: Construct) -> None:
        self._part = part
        self._stack = cdk.Stack.of(part)
        self._part_index = len(_path_below(self._stack, part)) - 1
        self._seen: set[str] = set()

    def visit(self, node: IConstruct) -> None:
        path = node.node.path
        if path in self._seen:
            return
        self._seen.add(path)
        if cdk.CfnElement.is_cfn_element(node):
            self._keep_legacy_id(node)  # type: ignore[arg-type]

    def _keep_legacy_id(self, element: cdk.CfnElement) -> None:
        stack = cdk.Stack.of(element)
        if stack.node.path != self._stack.node.path:
            return  # the element lives in a nested stack of its own: its IDs never included the part
        components = _path_below(stack, element)
        allocated = stack.get_logical_id(element)
        if allocated != make_unique_id(components):
            cdk.Annotations.of(element).add_warning_v2(
                "routed-bedrock:legacy-logical-id",
                f"stack '{stack.node.path}' allocates logical ids its own way: '{element.node.path}' keeps "
                f"'{allocated}', which may differ from the id it had before {self._part.node.path} was split out",
            )
            return
        legacy = make_unique_id(components[: self._part_index] + components[self._part_index + 1 :])
        if stack.resolve(element.logical_id) not in (allocated, legacy):
            return  # overridden on purpose by someone else: theirs wins
        element.override_logical_id(legacy)


def keep_legacy_logical_ids(part: Construct) -> None:
    """Give every element under ``part`` (now and added later) the logical ID it had as its parent's child.

    Raises:
        ValueError: a child of ``part`` has the ID of a child of its parent: their legacy paths would collide.
    """
    parent = part.node.scope
    if parent is not None:
        for child in part.node.children:
            if parent.node.try_find_child(child.node.id) is not None:
                raise ValueError(
                    f"'{child.node.path}' and '{parent.node.path}/{child.node.id}' would share a logical id"
                )
    legacy_ids = _LegacyLogicalIds(part)
    for node in part.node.find_all():
        legacy_ids.visit(node)
    cdk.Aspects.of(part).add(legacy_ids, priority=cdk.AspectPriority.MUTATING)

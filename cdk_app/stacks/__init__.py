"""This repository's own reference deployment, composed only of the constructs."""

from .routed_bedrock_stack import RoutedBedrockStack

__all__ = ["RoutedBedrockStack"]

"""Synthesis methods (pure tensor code), the one optimization loop, and the actor that holds loaded nets."""

"""Curated mutants: one module per component, each an impl variant that reintroduces one known bug.

The lockstep Components in `properties/` read them through `meshspec.registry.mutants_of`.
"""

"""The Steward agent: a standard-library-only program (Python >= 3.8) shipped as ``agent.pyz``.

The controller imports only ``nodes.agent.protocol`` from here; ``nodes.agent_package`` builds
the archive. Importing this package has no side effects.
"""

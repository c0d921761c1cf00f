"""Repository environments: a pristine tree and a venv per SWE-smith repo id, sandboxed tests.

Public API (others code against it): `get_environment(repo_id, envs_cfg) -> RepoEnvironment`;
`env.working_copy()`, `env.apply_patch(tree, patch, reverse=False)`,
`env.run_tests(tree, node_ids, timeout_s=None) -> TestRun`. See docs/envs.md.
"""

from hrm.envs.environment import RepoEnvironment, get_environment
from hrm.envs.errors import EnvironmentUnavailable, PatchError
from hrm.envs.results import TestResult, TestRun

__all__ = ["EnvironmentUnavailable", "PatchError", "RepoEnvironment", "TestResult", "TestRun",
           "get_environment"]

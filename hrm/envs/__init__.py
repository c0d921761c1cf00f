"""Repository environments: a pristine tree and a place to run its tests, per SWE-smith repo id.

Public API (others code against it): `get_environment(repo_id, envs_cfg, image_name="") ->
Environment` (the protocol in `hrm.envs.providers`, implemented by `RepoEnvironment` for the
`sdist`/`git` providers and `ImageEnvironment` for `image`); `env.working_copy()`,
`env.apply_patch(tree, patch, reverse=False)`, `env.diff(tree)`,
`env.run_tests(tree, node_ids, timeout_s=None) -> TestRun`, `env.fingerprint`. See docs/envs.md.
"""

from hrm.envs.environment import RepoEnvironment, get_environment
from hrm.envs.errors import EnvironmentUnavailable, PatchError
from hrm.envs.image import ContainerRuntimeUnavailable, ImageEnvironment
from hrm.envs.providers import Environment, Provider
from hrm.envs.results import TestResult, TestRun

__all__ = ["ContainerRuntimeUnavailable", "Environment", "EnvironmentUnavailable",
           "ImageEnvironment", "PatchError", "Provider", "RepoEnvironment", "TestResult",
           "TestRun", "get_environment"]

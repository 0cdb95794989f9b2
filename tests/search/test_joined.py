"""`--address auto` joins whatever Ray runs on this machine, maybe another process's: the launcher says which."""
import re

import pytest


@pytest.mark.slow
@pytest.mark.ray
def test_the_launcher_says_which_cluster_it_joined():
    import ray

    from search.cluster import joined_cluster

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        line = joined_cluster("auto")
    finally:
        ray.shutdown()
    assert re.fullmatch(r"joined the Ray cluster at [\d.]+:\d+ \(--address auto\): 1 node\(s\), 1 CPUs, 0 GPUs; "
                        r"started by user \S+ \(session \S+session_\S+\)", line), line

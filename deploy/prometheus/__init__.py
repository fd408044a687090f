"""A real Prometheus for a swarm-machine lab, run inside one of its machines.

    machines = Lab().machines("demo")
    prometheus = LabPrometheus(machines[0])
    prometheus.start(targets_for(machines))
    prometheus.api.query('sum(shoal_manager_tasks{state="running"})')
    prometheus.stop()

`prometheus.yml` is the configuration (scrape every second, targets from a file);
`targets` writes that file, `server` starts and stops Prometheus in the machine's namespaces
with its storage under the machine's state dir, and `api` asks it PromQL from inside the
machine's network namespace (the host's namespace never talks to a lab address).
"""

"""What the planner says about a model on a machine, what a month of running it costs, and what the
installation can use (doctor): the services behind plan, cost, hw and doctor, on the CLI and HTTP."""

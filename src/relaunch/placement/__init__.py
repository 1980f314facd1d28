"""Where an attempt goes: the run's offers (regions, zones), minus places the cloud
refused recently (learned across runs, see ``blocklist``)."""

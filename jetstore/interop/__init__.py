"""What other tools read: weaver-core's data-configs with the stored stats, and weaver-ready files."""

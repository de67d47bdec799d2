"""What every Portico service shares: settings, server bootstrap, interceptors, errors, logs."""

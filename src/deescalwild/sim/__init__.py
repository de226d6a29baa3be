"""The training simulator: scenario cards, a civilian whose agitation answers the trainee's
tactics, sessions kept in SQLite, after-action reports, a terminal and a web interface."""

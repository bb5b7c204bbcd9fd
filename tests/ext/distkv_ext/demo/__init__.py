"""A small distkv extension: a server action and the client commands that call it."""

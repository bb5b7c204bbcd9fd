from distkv.command.main import cmd

if __name__ == "__main__":
    cmd()

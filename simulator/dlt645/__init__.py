"""DL/T 645-2007 and -1997 meters on a simulated RS-485 bus."""

"""Runs the installed getmail with its wait for a delivery child made safe.

getmail 6 forks a child for each delivery (as the configured user), and
only after fork() does the parent install its SIGCHLD handler and wait on a
condition that handler notifies. A child that exits first (quick on tmpfs,
likelier on a loaded machine) is never noticed: the parent sits out its
whole timeout, and the POP3 test around it times out with Tern idle and
every message already sent. Here the parent simply waits with waitpid().

Usage: python3 getmail_waitpid.py [getmail arguments]
"""
import os
import runpy
import sys

from getmailcore import baseclasses
from getmailcore.exceptions import getmailOperationError

GETMAIL = "/usr/bin/getmail"


def wait_for_child(self, childpid):
    _, status = os.waitpid(childpid, 0)
    if os.WIFSIGNALED(status):
        raise getmailOperationError(
            f"child pid {childpid} killed by signal {os.WTERMSIG(status)}")
    if not os.WIFEXITED(status):
        raise getmailOperationError(f"child pid {childpid} failed to exit")
    return os.WEXITSTATUS(status)


baseclasses.ForkingBase._prepare_child = lambda self: None
baseclasses.ForkingBase._wait_for_child = wait_for_child
sys.argv[0] = GETMAIL
runpy.run_path(GETMAIL, run_name="__main__")

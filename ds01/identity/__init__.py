"""Who is in which role: the directory (AD or RFC2307 LDAP) is the source of
truth, the policy's rules and explicit lists sit on top.

- ``directory``: read users and groups with ldap3 (paged, TLS, secret from a root-only file)
- ``classify``: pure role decision with a reason for each user
- ``local``: the server's NSS view (``role_of``) and the new-user home handler
- ``sync``: plan and apply exact group membership, fail-safe, with a change log
- ``report``: staleness report; ``guard``: the admin account keeps sudo
"""

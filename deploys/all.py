"""The whole DS01 platform, in the order the server needs it.

Each component also runs alone: pyinfra inventory.py deploys/<component>.py
"""

from pyinfra import local

local.include("deploys/base.py")
local.include("deploys/storage.py")
local.include("deploys/slices.py")
local.include("deploys/gpu.py")

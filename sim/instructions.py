"""Natural-language instructions, one per task: the `task` text stored with every episode
(architecture.md §Conventions).

Written from what each task's success check measures (metaworld/envs/sawyer_*_v3.py, robosuite's
`_check_success`), in the imperative, lower case, no final full stop.
"""

from __future__ import annotations

# Metaworld v3: task name (without "-v3") -> instruction. The keys are also the list of Metaworld tasks
# in the registry; tests check they equal metaworld's own ALL_V3_ENVIRONMENTS.
METAWORLD_INSTRUCTIONS: dict[str, str] = {
    "assembly": "pick up the nut and place it onto the peg",
    "basketball": "pick up the basketball and dunk it into the hoop",
    "bin-picking": "pick up the puck from one bin and place it into the other bin",
    "box-close": "pick up the lid and place it onto the box to close it",
    "button-press-topdown": "press the button down from the top",
    "button-press-topdown-wall": "press the button down from the top, reaching over the wall",
    "button-press": "press the button on the front of the box",
    "button-press-wall": "press the button on the front of the box, reaching behind the wall",
    "coffee-button": "press the button on the coffee machine",
    "coffee-pull": "pull the mug out from under the coffee machine to the goal",
    "coffee-push": "push the mug under the coffee machine",
    "dial-turn": "rotate the dial a full turn",
    "disassemble": "pick the nut up and off the peg",
    "door-close": "push the door closed",
    "door-lock": "turn the lock on the door to lock it",
    "door-open": "pull the door open",
    "door-unlock": "turn the lock on the door to unlock it",
    "hand-insert": "push the puck into the hole",
    "drawer-close": "push the drawer closed",
    "drawer-open": "pull the drawer open",
    "faucet-open": "rotate the faucet handle to the left to open it",
    "faucet-close": "rotate the faucet handle to the right to close it",
    "hammer": "pick up the hammer and hammer the nail into the wall",
    "handle-press-side": "press the handle down from the side",
    "handle-press": "press the handle down",
    "handle-pull-side": "pull the handle up from the side",
    "handle-pull": "pull the handle up",
    "lever-pull": "pull the lever up",
    "pick-place-wall": "pick up the puck and place it at the goal behind the wall",
    "pick-out-of-hole": "pick the puck up out of the hole and move it to the goal",
    "pick-place": "pick up the puck and place it at the goal",
    "plate-slide": "slide the plate into the cabinet",
    "plate-slide-side": "slide the plate sideways into the cabinet",
    "plate-slide-back": "slide the plate back out of the cabinet",
    "plate-slide-back-side": "slide the plate sideways out of the cabinet",
    "peg-insert-side": "pick up the peg and insert it sideways into the hole",
    "peg-unplug-side": "pull the peg sideways out of the hole",
    "soccer": "push the soccer ball into the goal",
    "stick-push": "grasp the stick and use it to push the thermos to the goal",
    "stick-pull": "grasp the stick and use it to pull the thermos to the goal",
    "push": "push the puck to the goal",
    "push-wall": "push the puck around the wall to the goal",
    "push-back": "push the puck backwards to the goal",
    "reach": "reach the goal position with the gripper",
    "reach-wall": "reach over the wall to the goal position",
    "shelf-place": "pick up the puck and place it on the shelf",
    "sweep-into": "sweep the puck into the hole",
    "sweep": "sweep the puck off the edge of the table",
    "window-open": "slide the window open",
    "window-close": "slide the window closed",
}

# robosuite: task name (the id after "robosuite/") -> instruction.
ROBOSUITE_INSTRUCTIONS: dict[str, str] = {
    "Lift": "lift the red cube",
    "Stack": "stack the red cube on top of the green cube",
    "PickPlaceCan": "pick up the can and place it in its bin",
}

"""Conversions between the episode store and other robot-learning dataset formats (architecture.md
§Interop).

    source.py        the `Source` a reader hands over: facts of the whole dataset plus one episode at a time
    destination.py   writing a Source into a new store: the `conversion` marker, resume, progress, clean-up
    lerobot.py       LeRobot dataset (v3: parquet + mp4) -> Source, read through LeRobot's own classes
    lerobot_export.py  episode store -> LeRobot dataset, written through `LeRobotDataset.create`
    robomimic.py     robomimic hdf5 (`data/demo_N/...`) -> Source

Nothing heavy is imported here: LeRobot, torch and h5py are imported inside the functions that need
them, so `visuomotor --help` stays instant.
"""

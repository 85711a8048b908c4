"""Training: Lightning data modules over the clip table, and the synthesized machine instances they add.

`MachineIDDataModule` (`datamodule`) and `LogMelWindowDataModule` (`frame_windows`) are what `ssad fit`
builds from YAML, where run configs name them `ssad.data.<Class>`; `augmentation` makes the instances.
"""

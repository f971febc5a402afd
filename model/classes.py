"""Class names: the background class and the 28 AVE event classes."""

BACKGROUND = "background"  # the last class of every model: no audio-visual event
# The 28 AVE event classes in index order (the AVE dataset's categories.txt), background last:
# the labels of an untrained model that has no checkpoint to name them.
AVE_CLASSES = (
    "Church bell", "Male speech, man speaking", "Bark", "Fixed-wing aircraft, airplane",
    "Race car, auto racing", "Female speech, woman speaking", "Helicopter", "Violin, fiddle",
    "Flute", "Ukulele", "Frying (food)", "Truck", "Shofar", "Motorcycle", "Acoustic guitar",
    "Train horn", "Clock", "Banjo", "Goat", "Baby cry, infant cry", "Bus", "Chainsaw", "Cat",
    "Horse", "Toilet flush", "Rodents, rats, mice", "Accordion", "Mandolin", BACKGROUND,
)

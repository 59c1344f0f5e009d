"""Real-data preparation: folders of talking-head videos -> the dataset format the trainers read."""

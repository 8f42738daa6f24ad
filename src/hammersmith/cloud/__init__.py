"""Cloud access: one openstacksdk connection per site, and the snapshot read through it."""

-- chats.db version 4: the installation's device id, made at the first
-- start and sent with every call (the Device-Id header), so that the
-- server keeps this database's place in the user's queue apart from the
-- user's other devices. A new account on the database gets a new id.
ALTER TABLE Account ADD COLUMN device_id TEXT NOT NULL DEFAULT '';

-- First statement of a serializable transfer, right after BEGIN.
SET TRANSACTION ISOLATION LEVEL SERIALIZABLE

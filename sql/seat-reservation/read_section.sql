-- optimistic: free seats and the version to compare against.
SELECT capacity - taken, version FROM sections WHERE id = $1

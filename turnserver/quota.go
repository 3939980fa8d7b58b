package turnserver

import "sync"

// quota counts each user's live allocations. Allocations are counted when
// pion reports them made and gone (EventHandler), and a new one is refused
// (486 Allocation Quota Reached) while its user has limit of them.
type quota struct {
	limit int

	mu    sync.Mutex
	users map[string]int // guarded by mu
}

func newQuota(limit int) *quota { return &quota{limit: limit, users: map[string]int{}} }

// allow reports whether user may make another allocation.
func (q *quota) allow(user string) bool {
	if q.limit <= 0 {
		return true
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.users[user] < q.limit
}

func (q *quota) add(user string, n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.users[user] += n
	if q.users[user] <= 0 {
		delete(q.users, user)
	}
}

// Command edgechat is a terminal chat app on the edgenode client SDK
// (package edgechat): the reference for what an app built on it does.
//
//	edgechat [flags] send USER TEXT...          store a message and try to deliver it
//	edgechat [flags] sync                       fetch and store what waits on the server
//	edgechat [flags] chats                      the chat list, newest first, with unread counts
//	edgechat [flags] history USER [--before ID] [--limit N]
//	edgechat [flags] read USER                  mark the conversation read (sends the READ receipt)
//	edgechat [flags] devices add --platform apns|fcm [--topic T] [--sandbox] TOKEN
//	edgechat [flags] devices rm TOKEN|DEVICE_ID   forget a push token, or revoke an installation
//	edgechat [flags] devices list              this user's linked installations
//	edgechat [flags] [chat [USER]]              interactive mode
//
// Flags: --server URL (EDGECHAT_SERVER), --token JWT (EDGECHAT_TOKEN),
// --token-cmd CMD (EDGECHAT_TOKEN_CMD), --db PATH (EDGECHAT_DB, default
// chats-USERID.db), --switch-account, --json.
//
// Tokens: --token-cmd CMD is a shell command (sh -c CMD) that prints a fresh
// JWT on stdout; EDGECHAT_TOKEN_REASON tells it why (start, expiring,
// unauthorized). Without --token, edgechat runs it once at startup for the
// first token (and the user id). The SDK then runs it whenever the server
// refuses the token (HTTP 401), and the interactive mode also before the
// token expires. Without it, a refused token stops sending until a new one
// comes (/token JWT in the interactive mode).
//
// Accounts: the database belongs to the user (and server) it was first used
// for. Opening another user's fails with exit code 2; --switch-account
// empties it for the new user (the other account's unsent messages are
// lost).
//
// Messages live in the local database: history and chats work offline.
// send stores first and tries to deliver for a few seconds at most; what it
// could not deliver stays queued, and every later command first retries it.
//
// A message shown "! failed (expired: ...)" may have been delivered already:
// an attempt got no answer, and the server no longer remembers it. In the
// interactive mode /resend asks for confirmation before sending it again,
// since the recipient may then see it twice. A message shown "✗ expired:
// never delivered" was accepted, but the server dropped it at the end of its
// retention period before the recipient fetched it.
//
// Interactive commands: a user id opens a chat (/new USER from a chat),
// /back, /typing, /resend ID, /delete ID, /retry (queue every failed
// message again), /token JWT (replace a refused token), /quit.
//
// Errors of the SDK are printed with their code (edgechat.ErrorCode) in
// brackets. Exit codes: 0 done, 1 an error, 2 the database belongs to
// another account.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgenode/edgenode/edgechat"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// options are the parsed command line.
type options struct {
	server, token, db string
	tokenCmd          string
	switchAccount     bool
	json              bool
	before            int64
	limit             int
	platform, topic   string
	sandbox           bool
	args              []string
}

var valueFlags = map[string]bool{"server": true, "token": true, "token-cmd": true, "db": true, "before": true, "limit": true, "platform": true, "topic": true}
var boolFlags = map[string]bool{"json": true, "sandbox": true, "switch-account": true, "help": true, "h": true}

// parse reads flags anywhere on the line (before or after the subcommand
// and its arguments); "--" ends them.
func parse(args []string, getenv func(string) string) (options, error) {
	o := options{server: getenv("EDGECHAT_SERVER"), token: getenv("EDGECHAT_TOKEN"), tokenCmd: getenv("EDGECHAT_TOKEN_CMD"),
		db: getenv("EDGECHAT_DB"), limit: 50}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			o.args = append(o.args, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			o.args = append(o.args, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case boolFlags[name]:
			if name == "help" || name == "h" {
				return o, errHelp
			}
			b := true
			if hasVal {
				var err error
				if b, err = strconv.ParseBool(val); err != nil {
					return o, fmt.Errorf("--%s: %v", name, err)
				}
			}
			switch name {
			case "json":
				o.json = b
			case "sandbox":
				o.sandbox = b
			case "switch-account":
				o.switchAccount = b
			}
		case valueFlags[name]:
			if !hasVal {
				if i+1 >= len(args) {
					return o, fmt.Errorf("--%s needs a value", name)
				}
				i++
				val = args[i]
			}
			var err error
			switch name {
			case "server":
				o.server = val
			case "token":
				o.token = val
			case "token-cmd":
				o.tokenCmd = val
			case "db":
				o.db = val
			case "before":
				o.before, err = strconv.ParseInt(val, 10, 64)
			case "limit":
				o.limit, err = strconv.Atoi(val)
			case "platform":
				o.platform = val
			case "topic":
				o.topic = val
			}
			if err != nil {
				return o, fmt.Errorf("--%s: %v", name, err)
			}
		default:
			return o, fmt.Errorf("unknown flag %s", a)
		}
	}
	return o, nil
}

var errHelp = errors.New("help")

const usage = `edgechat: a terminal chat on edgenode

  edgechat [flags] send USER TEXT...
  edgechat [flags] sync
  edgechat [flags] chats
  edgechat [flags] history USER [--before ID] [--limit N]
  edgechat [flags] read USER
  edgechat [flags] devices add --platform apns|fcm [--topic T] [--sandbox] TOKEN
  edgechat [flags] devices rm TOKEN|DEVICE_ID
  edgechat [flags] devices list
  edgechat [flags] [chat [USER]]      interactive

flags:
  --server URL      any edge node (env EDGECHAT_SERVER)
  --token JWT       your token, e.g. from "edgenode token --user ID" (env EDGECHAT_TOKEN)
  --token-cmd CMD   shell command printing a fresh token on stdout, run when the
                    server refuses the token (and before it expires, interactive);
                    EDGECHAT_TOKEN_REASON says why; without --token it also gives
                    the first one (env EDGECHAT_TOKEN_CMD)
  --db PATH         local database (env EDGECHAT_DB; default chats-USERID.db)
  --switch-account  the database belongs to another user or server: empty it
                    for this one (that account's unsent messages are lost)
  --json            print JSON (the SDK's Message and ConversationPreview models)

interactive: USER id or /new USER opens a chat · /back · /typing · /resend ID
  · /delete ID · /retry · /token JWT · /quit

exit codes: 0 done, 1 an error, 2 the database belongs to another account
`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	o, err := parse(args, getenv)
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if err == nil {
		err = dispatch(o, stdin, stdout, stderr)
	}
	var oa *otherAccountError
	switch {
	case errors.As(err, &oa):
		fmt.Fprintf(stderr, "edgechat: %s is not user %d's database on %s: %s\n", oa.db, oa.user, oa.server, errText(oa.err))
		fmt.Fprintln(stderr, "edgechat: use another --db, or add --switch-account to empty it for user", oa.user,
			"(the other account's unsent messages are then lost)")
		return exitOtherAccount
	case err != nil:
		fmt.Fprintln(stderr, "edgechat:", errText(err))
		return 1
	}
	return 0
}

// exitOtherAccount is the exit code when --db is another account's.
const exitOtherAccount = 2

// otherAccountError is Open's other_account refusal, with what to say.
type otherAccountError struct {
	db, server string
	user       int64
	err        error
}

func (e *otherAccountError) Error() string { return e.err.Error() }
func (e *otherAccountError) Unwrap() error { return e.err }

// errText is err with the SDK's code (edgechat.ErrorCode) in brackets,
// when it is an error of the SDK and the text does not already say it.
func errText(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	var e *edgechat.Error
	var ae *edgechat.APIError
	var ne net.Error
	if errors.As(err, &e) || errors.As(err, &ae) || errors.As(err, &ne) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if code := edgechat.ErrorCode(err); code != "" && !strings.Contains(msg, code) {
			msg += " [" + code + "]"
		}
	}
	return msg
}

func open(o options) (*edgechat.Client, error) {
	if o.server == "" {
		return nil, errors.New("no server: pass --server URL or set EDGECHAT_SERVER")
	}
	var src edgechat.TokenSource
	if o.tokenCmd != "" {
		src = newCmdTokenSource(o.tokenCmd)
	}
	if o.token == "" {
		if src == nil {
			return nil, errors.New("no token: pass --token JWT or --token-cmd CMD, or set EDGECHAT_TOKEN or EDGECHAT_TOKEN_CMD")
		}
		// The first token, which also says who the user is.
		tok, err := src.Token(edgechat.TokenStart)
		if err != nil {
			return nil, fmt.Errorf("first token: %w", err)
		}
		o.token = tok
	}
	uid := edgechat.UserIDFromToken(o.token)
	if uid <= 0 {
		return nil, errors.New("the token has no numeric sub claim")
	}
	if o.db == "" {
		o.db = fmt.Sprintf("chats-%d.db", uid)
	}
	c, err := edgechat.Open(&edgechat.Config{ServerURL: o.server, Token: o.token, TokenSource: src, DBPath: o.db,
		WipeOtherAccount: o.switchAccount, MaxAttempts: 20})
	if edgechat.ErrorCode(err) == edgechat.CodeOtherAccount {
		return nil, &otherAccountError{db: o.db, server: o.server, user: uid, err: err}
	}
	return c, err
}

// Time budgets of the scriptable commands: a few seconds at most.
const (
	sendBudget  = 5000
	retryBudget = 2000
	syncBudget  = 3 * time.Second
)

func dispatch(o options, stdin io.Reader, stdout, stderr io.Writer) error {
	sub := "chat"
	args := o.args
	if len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	if sub == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	c, err := open(o)
	if err != nil {
		return err
	}
	defer c.Close()
	switch sub {
	case "send":
		return cmdSend(c, o, args, stdout, stderr)
	case "sync":
		return cmdSync(c, o, stdout, stderr)
	case "chats":
		return cmdChats(c, o, stdout, stderr)
	case "history":
		return cmdHistory(c, o, args, stdout, stderr)
	case "read":
		return cmdRead(c, o, args, stdout, stderr)
	case "devices":
		return cmdDevices(c, o, args, stdout, stderr)
	case "chat":
		var open int64
		if len(args) > 0 {
			if open, err = userArg(args[0]); err != nil {
				return err
			}
		}
		return interactive(c, open, stdin, stdout)
	}
	return fmt.Errorf("unknown command %q (see edgechat --help)", sub)
}

func userArg(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("bad user id %q", s)
	}
	return id, nil
}

// catchUp retries what is pending and fetches what waits, within a short
// budget; offline, the command goes on with the local data.
func catchUp(c *edgechat.Client, stderr io.Writer) {
	ferr := c.Flush(retryBudget)
	serr := func() error {
		done := make(chan error, 1)
		go func() { done <- c.Sync() }()
		select {
		case err := <-done:
			return err
		case <-time.After(syncBudget):
			return errors.New("sync timed out")
		}
	}()
	if ferr != nil || serr != nil {
		n, _ := c.PendingCount()
		err := serr
		if err == nil {
			err = ferr
		}
		// An answer the server gave (a refused token, say) is not "unreachable".
		what := "server unreachable"
		if edgechat.ErrorStatus(err) != 0 || edgechat.ErrorCode(err) == edgechat.CodeTokenSource {
			what = "server refused: " + errText(err)
		}
		fmt.Fprintf(stderr, "edgechat: %s, showing local data (%d message(s) queued)\n", what, n)
	}
}

func cmdSend(c *edgechat.Client, o options, args []string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		return errors.New("usage: send USER TEXT")
	}
	to, err := userArg(args[0])
	if err != nil {
		return err
	}
	m, err := c.Send(to, strings.Join(args[1:], " "))
	if err != nil {
		return err
	}
	// Earlier queued messages go first, in order, then this one.
	ferr := c.Flush(sendBudget)
	out, err := sentView(c, to, m)
	if err != nil {
		return err
	}
	switch {
	case out.Status == edgechat.StatusFailed && out.Expired:
		fmt.Fprintf(stderr, "edgechat: not delivered, expired: it may have been delivered already: %s\n", errText(ferr))
	case out.Status == edgechat.StatusFailed:
		fmt.Fprintf(stderr, "edgechat: not delivered: %s\n", errText(ferr))
	case out.Pending():
		fmt.Fprintf(stderr, "edgechat: not delivered yet, queued: %s\n", errText(ferr))
	}
	if o.json {
		return printJSON(stdout, out)
	}
	fmt.Fprintln(stdout, formatMessage(&out, c.UserID()))
	return nil
}

// sentView is m as the conversation shows it now: the request, found by
// its RequestID (a re-stamp after a 409 request_expired keeps it), or,
// once accepted, the newest message of mine with its content created at or
// after it (a re-stamp moves createdAt later).
func sentView(c *edgechat.Client, to int64, m *edgechat.Message) (edgechat.Message, error) {
	h, err := c.History(to, 0, 50)
	if err != nil {
		return edgechat.Message{}, err
	}
	for i := h.Len() - 1; i >= 0; i-- {
		if x := h.Get(i); x.Pending() && x.RequestID == m.RequestID {
			return *x, nil
		}
	}
	for i := h.Len() - 1; i >= 0; i-- {
		if x := h.Get(i); !x.Pending() && x.FromUserID == c.UserID() && x.Content == m.Content && x.CreatedAt >= m.CreatedAt {
			return *x, nil
		}
	}
	return *m, nil
}

func cmdSync(c *edgechat.Client, o options, stdout, stderr io.Writer) error {
	ferr := c.Flush(retryBudget)
	if err := c.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	pending, _ := c.PendingCount()
	chats, err := c.Chats()
	if err != nil {
		return err
	}
	unread := 0
	for i := 0; i < chats.Len(); i++ {
		unread += chats.Get(i).UnreadCount
	}
	if o.json {
		return printJSON(stdout, map[string]int{"conversations": chats.Len(), "unread": unread, "pending": pending})
	}
	if ferr != nil {
		fmt.Fprintf(stderr, "edgechat: %d message(s) still queued: %s\n", pending, errText(ferr))
	}
	fmt.Fprintf(stdout, "synced: %d conversation(s), %d unread, %d queued\n", chats.Len(), unread, pending)
	return nil
}

func cmdChats(c *edgechat.Client, o options, stdout, stderr io.Writer) error {
	catchUp(c, stderr)
	chats, err := c.Chats()
	if err != nil {
		return err
	}
	if o.json {
		list := chats.Conversations()
		if list == nil {
			list = []edgechat.ConversationPreview{}
		}
		return printJSON(stdout, list)
	}
	printChats(stdout, chats)
	return nil
}

func cmdHistory(c *edgechat.Client, o options, args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: history USER [--before ID] [--limit N]")
	}
	with, err := userArg(args[0])
	if err != nil {
		return err
	}
	catchUp(c, stderr)
	page, err := c.History(with, o.before, o.limit)
	if err != nil {
		return err
	}
	if o.json {
		list := page.Messages()
		if list == nil {
			list = []edgechat.Message{}
		}
		return printJSON(stdout, list)
	}
	for i := 0; i < page.Len(); i++ {
		fmt.Fprintln(stdout, formatMessage(page.Get(i), c.UserID()))
	}
	if page.HasMore {
		fmt.Fprintf(stdout, "(older: --before %d)\n", page.NextBefore)
	}
	return nil
}

func cmdRead(c *edgechat.Client, o options, args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: read USER")
	}
	with, err := userArg(args[0])
	if err != nil {
		return err
	}
	catchUp(c, stderr)
	if err := c.MarkRead(with); err != nil {
		return err
	}
	n, _ := c.UnreadCount(with)
	if o.json {
		return printJSON(stdout, map[string]any{"userId": with, "unreadCount": n})
	}
	fmt.Fprintf(stdout, "conversation with %d marked read\n", with)
	return nil
}

func cmdDevices(c *edgechat.Client, o options, args []string, stdout, stderr io.Writer) error {
	if len(args) == 1 && args[0] == "list" {
		l, err := c.LinkedDevices()
		if err != nil {
			return err
		}
		if o.json {
			out := make([]edgechat.LinkedDevice, l.Len())
			for i := range out {
				out[i] = *l.Get(i)
			}
			return printJSON(stdout, out)
		}
		for i := range l.Len() {
			d := l.Get(i)
			name, this := d.DeviceID, ""
			if name == "" {
				name = "(default device)"
			}
			if d.Current {
				this = " (this one)"
			}
			fmt.Fprintf(stdout, "%s  last seen %s%s\n", name, d.LastSeenAt, this)
		}
		return nil
	}
	if len(args) != 2 || (args[0] != "add" && args[0] != "rm") {
		return errors.New("usage: devices add --platform apns|fcm [--topic T] [--sandbox] TOKEN | devices rm TOKEN|DEVICE_ID | devices list")
	}
	tok := args[1]
	var err error
	if args[0] == "add" {
		if o.platform != "apns" && o.platform != "fcm" {
			return errors.New("devices add needs --platform apns or fcm")
		}
		err = c.RegisterDevice(o.platform, tok, o.topic, o.sandbox)
	} else {
		err = c.UnregisterDevice(tok)
	}
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(stdout, map[string]string{"token": tok, "action": args[0]})
	}
	fmt.Fprintf(stdout, "device %s: %s\n", map[string]string{"add": "registered", "rm": "removed"}[args[0]], tok)
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// mark is the status mark of one of my messages.
func mark(status string) string {
	switch status {
	case edgechat.StatusPending:
		return "…"
	case edgechat.StatusFailed:
		return "! failed"
	case edgechat.StatusSynced:
		return "✓"
	case edgechat.StatusDelivered:
		return "✓✓"
	case edgechat.StatusRead:
		return "✓✓ read"
	case edgechat.StatusExpired:
		return "✗ expired: never delivered"
	}
	return status
}

func shortTime(ts string) string {
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return ts
	}
	t = t.Local()
	if time.Since(t) < 20*time.Hour {
		return t.Format("15:04")
	}
	return t.Format("Jan 2 15:04")
}

func formatMessage(m *edgechat.Message, me int64) string {
	if m.FromUserID == me {
		line := fmt.Sprintf("%s  me: %s  %s", shortTime(m.CreatedAt), m.Content, mark(m.Status))
		if m.Status == edgechat.StatusFailed && m.Expired {
			line += " (expired: it may have been delivered already)"
		}
		return line
	}
	return fmt.Sprintf("%s  %d: %s", shortTime(m.CreatedAt), m.FromUserID, m.Content)
}

func contactName(u *edgechat.User) string {
	if u.Name != "" {
		return fmt.Sprintf("%s (%d)", u.Name, u.ID)
	}
	return strconv.FormatInt(u.ID, 10)
}

func printChats(w io.Writer, chats *edgechat.ConversationList) {
	if chats.Len() == 0 {
		fmt.Fprintln(w, "no conversations yet")
		return
	}
	for i := 0; i < chats.Len(); i++ {
		p := chats.Get(i)
		unread := ""
		if p.UnreadCount > 0 {
			unread = fmt.Sprintf(" [%d unread]", p.UnreadCount)
		}
		summary := p.LastMessageSummary
		if p.LastMessageFromMe {
			summary = "me: " + summary + "  " + mark(p.LastMessageStatus)
		}
		fmt.Fprintf(w, "%-20s %6s%s  %s\n", contactName(p.GetContact()), shortTime(p.LastMessageTimestamp), unread, summary)
	}
}

// interactive is the chat list and conversation screens of the seed, on a
// line terminal: the screen is redrawn when the SDK reports a change to
// what it shows.
func interactive(c *edgechat.Client, open int64, stdin io.Reader, stdout io.Writer) error {
	changes := make(chan struct{}, 1)
	l := &uiListener{changes: changes}
	c.SetListener(l)
	if err := c.Start(); err != nil {
		return err
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	ui := &screen{c: c, w: stdout, current: open, state: edgechat.ConnConnecting}
	ui.enter(open)
	// Leaving, give what was just typed a moment to go out; what cannot
	// stays queued for the next run.
	defer c.Flush(retryBudget)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			if quit := ui.input(strings.TrimSpace(line)); quit {
				return nil
			}
		case <-changes:
			if l.drainInto(ui) {
				ui.draw()
			}
		}
	}
}

// uiListener is the SDK's Listener: it notes what changed, from the SDK's
// goroutine, and wakes the UI loop, which alone writes to the terminal.
type uiListener struct {
	changes chan struct{}

	mu       sync.Mutex
	state    string
	convs    map[int64]bool // conversations that changed
	presence map[int64]bool // contacts whose presence or typing changed
	expired  int            // my messages the server dropped undelivered
	authFail string         // the last OnAuthFailed, as the user reads it
	authOK   bool           // connected after it: the token works again
}

func (l *uiListener) signal() {
	select {
	case l.changes <- struct{}{}:
	default:
	}
}

func (l *uiListener) OnChanges(cl *edgechat.ChangeList) {
	l.mu.Lock()
	if l.convs == nil {
		l.convs = map[int64]bool{}
	}
	for i := 0; i < cl.Len(); i++ {
		ch := cl.Get(i)
		l.convs[ch.ContactID] = true
		if ch.Kind == edgechat.ChangeMessageStatus && ch.Status == edgechat.StatusExpired {
			l.expired++
		}
	}
	l.mu.Unlock()
	l.signal()
}

// OnAuthFailed: sending and the socket wait for a token the server takes;
// the screens say so until /token gives one or the connection is back.
func (l *uiListener) OnAuthFailed(code, message string) {
	var text string
	if code == edgechat.CodeTokenSource {
		text = fmt.Sprintf("! no usable token [%s]: %s · /token JWT sets one", code, message)
	} else {
		text = fmt.Sprintf("! the server refused the token [%s]: %s · /token JWT sets a new one", code, message)
	}
	l.mu.Lock()
	l.authFail, l.authOK = text, false
	l.mu.Unlock()
	l.signal()
}

func (l *uiListener) OnContactStatus(info *edgechat.ContactInfo) {
	l.mu.Lock()
	if l.presence == nil {
		l.presence = map[int64]bool{}
	}
	l.presence[info.UserID] = true
	l.mu.Unlock()
	l.signal()
}

func (l *uiListener) OnConnectionChanged(state string) {
	l.mu.Lock()
	l.state = state
	if state == edgechat.ConnOnline {
		l.authFail, l.authOK = "", true
	}
	l.mu.Unlock()
	l.signal()
}

// drainInto moves what the listener noted into s and reports whether the
// screen shows any of it.
func (l *uiListener) drainInto(s *screen) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	redraw := false
	if l.state != "" && l.state != s.state {
		s.state = l.state
		redraw = true
	}
	if l.authOK {
		redraw = redraw || s.authAlert != ""
		s.authAlert = ""
	}
	if l.authFail != "" {
		s.authAlert = l.authFail
		redraw = true
	}
	if l.expired > 0 {
		s.notice = fmt.Sprintf("%d message(s) expired on the server: never delivered", l.expired)
		redraw = true
	}
	if s.current == 0 {
		redraw = redraw || len(l.convs) > 0
	} else {
		redraw = redraw || l.convs[s.current] || l.presence[s.current]
	}
	l.convs, l.presence, l.expired, l.authFail, l.authOK = nil, nil, 0, "", false
	return redraw
}

type screen struct {
	c         *edgechat.Client
	w         io.Writer
	current   int64 // 0: the chat list
	state     string
	notice    string // shown under the screen until the next input
	authAlert string // the token was refused: shown until a new one works
	confirm   int64  // the expired request a second /resend sends
}

func (s *screen) enter(contact int64) {
	s.current = contact
	if contact != 0 {
		s.c.WatchIDs([]int64{contact})
		s.c.MarkRead(contact)
	} else {
		if chats, err := s.c.Chats(); err == nil {
			var ids []int64
			for i := 0; i < chats.Len() && i < 1000; i++ {
				ids = append(ids, chats.Get(i).Contact.ID)
			}
			s.c.WatchIDs(ids)
		}
	}
	s.draw()
}

func (s *screen) draw() {
	fmt.Fprint(s.w, "\033[H\033[2J")
	if s.current == 0 {
		fmt.Fprintf(s.w, "== Chats (%s) ==\n", s.state)
		chats, err := s.c.Chats()
		if err != nil {
			fmt.Fprintln(s.w, "error:", errText(err))
			return
		}
		printChats(s.w, chats)
		s.footer("open a chat: USER id · /new USER · /retry · /token JWT · /quit")
		return
	}
	info := s.c.ContactInfo(s.current)
	status := info.OnlineStatus()
	if info.Typing {
		status += ", typing…"
	}
	fmt.Fprintf(s.w, "== %d — %s (%s) ==\n", s.current, status, s.state)
	page, err := s.c.History(s.current, 0, 30)
	if err != nil {
		fmt.Fprintln(s.w, "error:", errText(err))
		return
	}
	for i := 0; i < page.Len(); i++ {
		m := page.Get(i)
		line := formatMessage(m, s.c.UserID())
		switch {
		case m.Status == edgechat.StatusFailed && m.Expired:
			line += fmt.Sprintf("  (/resend %d sends it again, it may show twice · /delete %d)", m.RequestID, m.RequestID)
		case m.Status == edgechat.StatusFailed:
			line += fmt.Sprintf("  (/resend %d · /delete %d)", m.RequestID, m.RequestID)
		}
		fmt.Fprintln(s.w, line)
	}
	s.footer("type a message and Enter · /back · /typing · /retry · /token JWT · /quit")
	if s.current != 0 {
		s.c.MarkRead(s.current)
	}
}

// footer prints the alerts and notice under a screen, then its help line.
func (s *screen) footer(help string) {
	if s.authAlert != "" {
		fmt.Fprintln(s.w, "\n"+s.authAlert)
	}
	if s.notice != "" {
		fmt.Fprintln(s.w, "\n"+s.notice)
	}
	fmt.Fprintln(s.w, "\n"+help)
}

// resend sends a failed message again. An expired one may have been
// delivered already and would then show twice: the first /resend only
// says so, a second one sends it.
func (s *screen) resend(id int64) error {
	r, err := s.c.Request(id)
	if err != nil {
		return err
	}
	if r.Expired && s.confirm != id {
		s.confirm = id
		s.notice = fmt.Sprintf("message %d may have been delivered already: /resend %d again to send it anyway (it may then show twice)", id, id)
		s.draw()
		return nil
	}
	s.confirm = 0
	return s.c.Resend(id)
}

// input handles one line; it reports whether to quit.
func (s *screen) input(line string) bool {
	if line == "/quit" {
		return true
	}
	s.notice = ""
	switch {
	case line == "":
	case line == "/token" || strings.HasPrefix(line, "/token "):
		tok := strings.TrimSpace(strings.TrimPrefix(line, "/token"))
		if tok == "" {
			fmt.Fprintln(s.w, "usage: /token JWT")
			return false
		}
		if err := s.c.SetToken(tok); err != nil {
			fmt.Fprintf(s.w, "token not set [%s]: %v\n", edgechat.ErrorCode(err), err)
			return false
		}
		s.authAlert = ""
		s.notice = "token set"
		s.draw()
	case line == "/retry":
		n, err := s.c.RetryFailed()
		if err != nil {
			fmt.Fprintln(s.w, "retry:", errText(err))
			return false
		}
		s.notice = fmt.Sprintf("%d failed message(s) queued again", n)
		s.draw()
	case line == "/back":
		s.enter(0)
	case strings.HasPrefix(line, "/new "), s.current == 0:
		id, err := userArg(strings.TrimSpace(strings.TrimPrefix(line, "/new ")))
		if err != nil {
			fmt.Fprintln(s.w, err)
			return false
		}
		s.enter(id)
	case line == "/typing":
		s.c.SetTyping(s.current, true)
	case strings.HasPrefix(line, "/resend "), strings.HasPrefix(line, "/delete "):
		id, err := strconv.ParseInt(strings.TrimSpace(line[8:]), 10, 64)
		if err == nil {
			if line[1] == 'r' {
				err = s.resend(id)
			} else {
				err = s.c.DeleteRequest(id)
			}
		}
		if err != nil {
			fmt.Fprintln(s.w, errText(err))
		}
	default:
		if _, err := s.c.Send(s.current, line); err != nil {
			fmt.Fprintln(s.w, errText(err))
		}
	}
	return false
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/edgenode/edgenode/edgechat"
)

// Bounds of a --token-cmd run.
const (
	tokenCmdTimeout   = 30 * time.Second
	tokenCmdMaxOutput = 64 << 10 // a JWT is a few KB at most
	tokenCmdMaxStderr = 200      // bytes of its stderr quoted in an error
)

// cmdTokenSource is the edgechat.TokenSource of --token-cmd: it runs
// `sh -c CMD` with EDGECHAT_TOKEN_REASON set to the SDK's reason (start,
// expiring, unauthorized) and takes the token from its stdout.
type cmdTokenSource struct {
	cmd     string
	timeout time.Duration
}

var _ edgechat.TokenSource = (*cmdTokenSource)(nil)

func newCmdTokenSource(cmd string) *cmdTokenSource {
	return &cmdTokenSource{cmd: cmd, timeout: tokenCmdTimeout}
}

// Token runs the command once.
func (s *cmdTokenSource) Token(reason string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", s.cmd)
	cmd.Env = append(os.Environ(), "EDGECHAT_TOKEN_REASON="+reason)
	// stdin stays /dev/null: the interactive mode reads the terminal.
	stdout := &capped{max: tokenCmdMaxOutput}
	stderr := &capped{max: tokenCmdMaxStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A child of sh that keeps the pipes open must not hold us past the
	// timeout.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	tail := ""
	if msg := strings.TrimSpace(stderr.String()); msg != "" {
		tail = ": " + msg
		if stderr.over {
			tail += "…"
		}
	}
	switch {
	case ctx.Err() != nil:
		return "", fmt.Errorf("token command timed out after %v%s", s.timeout, tail)
	case err != nil:
		return "", fmt.Errorf("token command: %v%s", err, tail)
	case stdout.over:
		return "", fmt.Errorf("token command printed more than %d bytes", tokenCmdMaxOutput)
	}
	tok := strings.TrimSpace(stdout.String())
	switch {
	case tok == "":
		return "", fmt.Errorf("token command printed no token%s", tail)
	case strings.ContainsAny(tok, " \t\r\n"):
		return "", errors.New("token command printed more than one word; it must print only the JWT")
	}
	return tok, nil
}

// capped keeps the first max bytes written to it and notes whether more
// came. (It does not embed bytes.Buffer: io.Copy would use its ReadFrom,
// which has no cap.)
type capped struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room < len(p) {
		c.over = true
		c.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return c.buf.Write(p)
}

func (c *capped) String() string { return c.buf.String() }

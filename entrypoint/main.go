// Command spotrun-exec is the trainer container's signal-forwarding entrypoint, with the
// semantics of `spotrun exec` (trainer/spotrun/execwrap.py) and nothing but the standard
// library, so it runs in any user image (static, CGO_ENABLED=0).
//
//	spotrun-exec [--] CMD [ARG...]   run CMD in its own process group, forward SIGTERM, SIGINT
//	                                 and SIGHUP to that group, exit with CMD's exit code
//	                                 (128+N when signal N ended it; 127 when CMD cannot start)
//	spotrun-exec --copy-to DIR       copy this binary to DIR/spotrun-exec (the operator's init
//	                                 container: the sidecar image hands it to the trainer)
//	spotrun-exec --version
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
)

// Version is stamped by hack/build-binaries and the sidecar image (-ldflags -X main.Version=).
var Version = "dev"

const name = "spotrun-exec"

var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "--":
			args = args[1:]
		case "--version":
			fmt.Printf("%s %s\n", name, Version)
			return 0
		case "--copy-to":
			if len(args) != 2 {
				return usage("--copy-to takes one directory")
			}
			return copyTo(args[1])
		default:
			if len(args[0]) > 0 && args[0][0] == '-' {
				return usage(fmt.Sprintf("unknown option %q", args[0]))
			}
		}
	}
	if len(args) == 0 {
		return usage("give the command after --")
	}
	return execute(args)
}

func usage(problem string) int {
	fmt.Fprintf(os.Stderr, "%s: %s\nusage: %s [--] CMD [ARG...] | --copy-to DIR | --version\n",
		name, problem, name)
	return 2
}

// execute runs command to completion and returns its shell-style exit code.
func execute(command []string) int {
	// Subscribe before the child exists, so a signal that arrives while it starts is not lost
	// (it is forwarded once the child's group exists).
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, forwarded...)
	defer signal.Stop(signals)

	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // its own session and process group
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: cannot start %q: %v\n", name, command[0], cleanCause(err))
		return 127
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case sig := <-signals:
			num := sig.(syscall.Signal)
			fmt.Fprintf(os.Stderr, "%s: forwarding %s to process group %d\n",
				name, signalName(num), cmd.Process.Pid)
			// ESRCH: the group is already gone; Wait reaps the child below.
			_ = syscall.Kill(-cmd.Process.Pid, num)
		case <-done:
			return exitCode(cmd.ProcessState)
		}
	}
}

// exitCode is the child's code, or 128+N when signal N ended it.
func exitCode(state *os.ProcessState) int {
	if status, ok := state.Sys().(syscall.WaitStatus); ok && status.Signaled() {
		return 128 + int(status.Signal())
	}
	return state.ExitCode()
}

func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGHUP:
		return "SIGHUP"
	}
	return sig.String()
}

func cleanCause(err error) error {
	var pathErr *os.PathError
	if errors.As(err, &pathErr) {
		return pathErr.Err
	}
	var execErr *exec.Error
	if errors.As(err, &execErr) {
		return execErr.Err
	}
	return err
}

// copyTo installs this binary as DIR/spotrun-exec (written beside, then renamed: a trainer
// never sees half a file), mode 0755 so any user of the trainer container can run it.
func copyTo(dir string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "%s: cannot copy itself to %s: %v (the directory must be a "+
			"writable volume, e.g. an emptyDir mounted there)\n", name, dir, err)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	src, err := os.Open(self)
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	target := filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err = io.Copy(tmp, src); err == nil {
		err = tmp.Chmod(0o755)
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), target)
	}
	if err != nil {
		return fail(err)
	}
	fmt.Printf("%s: installed %s\n", name, target)
	return 0
}

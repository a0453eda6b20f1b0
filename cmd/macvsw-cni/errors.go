package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/macvsw/macvsw/cmd/macvsw/api"
)

// The plugin's own CNI error codes (the spec leaves 100 and up to
// plugins).
const (
	// codeRefused: the daemon refused the request; the message is its
	// reason (a MAC in use, an MTU above the lower's, ...).
	codeRefused uint = 100
	// codeCheckFailed: CHECK found the attachment differs from the
	// result the runtime holds.
	codeCheckFailed uint = 101
	// codeConflict: ADD found something in the way: an interface of that
	// name in the netns, or the attachment's port elsewhere.
	codeConflict uint = 102
)

// unreachableMsg is what every command says when the daemon does not
// answer.
func unreachableMsg(socket string) string {
	return fmt.Sprintf("macvsw daemon not reachable at %s: is `macvsw run` running?", socket)
}

// daemonError turns an error from the daemon's client into a CNI error:
// 11 (try again later) when the daemon is not there or did not answer in
// time, 100 with the daemon's reason when it refused, 5 otherwise.
func daemonError(err error, socket string) *types.Error {
	var ae *api.Error
	switch {
	case errors.Is(err, api.ErrNoDaemon):
		return types.NewError(types.ErrTryAgainLater, unreachableMsg(socket), err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("macvsw daemon at %s did not answer in %v", socket, opTimeout), err.Error())
	case errors.As(err, &ae):
		return types.NewError(codeRefused, "macvsw refused the request: "+ae.Message, fmt.Sprintf("HTTP status %d from %s", ae.Status, socket))
	}
	return types.NewError(types.ErrIOFailure, fmt.Sprintf("macvsw daemon at %s: %v", socket, err), "")
}

// asCNIError keeps a *types.Error as it is and makes anything else an
// internal error with its text, so every path prints a CNI error object.
func asCNIError(err error) *types.Error {
	if err == nil {
		return nil
	}
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	return types.NewError(types.ErrInternal, err.Error(), "")
}

// joinErrors returns nil when every error is nil, the one error as a CNI
// error, or an internal CNI error listing them all.
func joinErrors(errs ...error) error {
	var nonNil []error
	for _, err := range errs {
		if err != nil {
			nonNil = append(nonNil, err)
		}
	}
	switch len(nonNil) {
	case 0:
		return nil
	case 1:
		return asCNIError(nonNil[0])
	}
	return types.NewError(types.ErrInternal, errors.Join(nonNil...).Error(), "")
}

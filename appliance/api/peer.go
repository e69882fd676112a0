package api

import (
	"errors"
	"fmt"
	"net"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/sys/unix"

	"github.com/omertaos/omertaos/appliance/apitype"
)

const peerKey = "omerta.peer"

// PeerFrom returns the caller's credentials; ok is false only for requests
// that did not come through a unix socket (tests calling the app directly).
func PeerFrom(c *fiber.Ctx) (apitype.Peer, bool) {
	p, ok := c.Locals(peerKey).(apitype.Peer)
	return p, ok
}

// peerCredentials hands each request the credentials its connection was
// accepted with. A unix connection whose credentials could not be read is
// refused: authorisation later depends on them.
func (s *Server) peerCredentials(c *fiber.Ctx) error {
	var (
		p   apitype.Peer
		err error
	)
	switch conn := c.Context().Conn().(type) {
	case *limitedConn:
		if !conn.unix {
			return c.Next()
		}
		p, err = conn.peer, conn.peerErr
	case *net.UnixConn:
		p, err = peerOf(conn)
	default:
		return c.Next()
	}
	if err != nil {
		return fiber.NewError(fiber.StatusForbidden, "reading peer credentials: "+err.Error())
	}
	c.Locals(peerKey, p)
	return c.Next()
}

// peerOf reads SO_PEERCRED: the process that connected, fixed by the kernel
// at connect time.
func peerOf(uc *net.UnixConn) (apitype.Peer, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return apitype.Peer{}, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return apitype.Peer{}, err
	}
	if serr != nil {
		return apitype.Peer{}, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	if cred == nil {
		return apitype.Peer{}, errors.New("SO_PEERCRED returned nothing")
	}
	return apitype.Peer{PID: uint32(cred.Pid), UID: cred.Uid, GID: cred.Gid}, nil
}

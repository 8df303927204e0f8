package mllp_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"perfusion/hl7/mllp"
	v2 "perfusion/hl7/v2"
)

func Example() {
	// A receiver that accepts everything (in production: the EHR's
	// interface engine).
	srv, err := mllp.Start("127.0.0.1:0", mllp.AckHandler(v2.HD{NamespaceID: "EHR"},
		func(*v2.Message) (v2.AckCode, *v2.AckError) { return v2.AA, nil }))
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	s, err := mllp.NewSender(mllp.SenderConfig{Addr: srv.Addr().String(), AckTimeout: 5 * time.Second})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	msg := []byte("MSH|^~\\&|PERFUSION|GENHOSP|EHR|GENHOSP|20261127114500+0100||ORU^R01^ORU_R01|HQSTLKKIEMC67HWCZ6FQ|P|2.6|||AL|NE\r")
	ack, err := s.Send(context.Background(), msg)
	var content *mllp.ContentError
	switch {
	case err == nil:
		fmt.Println("delivered:", ack.Code, ack.ControlID)
	case errors.As(err, &content):
		fmt.Println("fix the message:", content.Ack.ErrorCode) // keep content.Ack.Text with the message, not in logs
	default:
		fmt.Println("not delivered yet; the outbox retries later")
	}
	// Output:
	// delivered: AA HQSTLKKIEMC67HWCZ6FQ
}

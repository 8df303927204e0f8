package v2_test

import (
	"fmt"

	v2 "perfusion/hl7/v2"
)

func ExampleEscape() {
	fmt.Println(v2.Escape(`flow |ok| ^ A&B ~ C:\pump` + "\nnext line"))
	fmt.Println(v2.Unescape(`\F\ok\F\ \S\ A\T\B \R\ C:\E\pump\.br\next`))
	// Output:
	// flow \F\ok\F\ \S\ A\T\B \R\ C:\E\pump\.br\next line
	// |ok| ^ A&B ~ C:\pump
	// next
}

func ExampleParseAck() {
	ack, err := v2.ParseAck([]byte("MSH|^~\\&|EHR|GENHOSP|PERFUSION|GENHOSP|20261127114502+0100||ACK^R01^ACK|A1|P|2.6\r" +
		"MSA|AE|HQSTLKKIEMC67HWCZ6FQ\r" +
		"ERR|||204^Unknown key identifier^HL70357|E\r"))
	if err != nil {
		panic(err)
	}
	switch ack.Code.Class() {
	case v2.AckAccepted:
		fmt.Println("delivered")
	case v2.AckContentError:
		fmt.Println("content error, do not resend unchanged:", ack.ControlID, ack.ErrorCode, ack.ErrorCode.Text())
	case v2.AckRejected:
		fmt.Println("rejected, retry later")
	}
	// Output:
	// content error, do not resend unchanged: HQSTLKKIEMC67HWCZ6FQ 204 Unknown key identifier
}

func ExampleMessage_Get() {
	m, err := v2.Parse([]byte("MSH|^~\\&|PERFUSION\rPID|||00012345^^^GENHOSP^MR||Müller^Zoë^^^^^L\r"))
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Get("PID-3"), m.Get("PID-3.4"), m.Get("PID-5.2"))
	// Output:
	// 00012345 GENHOSP Zoë
}

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("staging", "0010_hardening_account_limits_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="subjob",
            name="failures",
            field=models.PositiveIntegerField(
                default=0,
                help_text="Times a run ended in a real failure (its worker lost, an unexpected "
                "error); hand-backs at a warm shutdown do not count. MAX_ATTEMPTS of them fail "
                "the sub-job.",
            ),
        ),
    ]

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0011_user_handles")]

    operations = [
        migrations.AlterField(
            model_name="user",
            name="handle",
            field=models.SlugField(max_length=40, unique=True),
        ),
    ]
